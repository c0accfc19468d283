"""The web process's entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi run``."""
import sys

from webapp import ConfigError, create_app, serve

try:
    app = serve(create_app())
except ConfigError as exc:  # a deployment mistake: say which setting, not a traceback
    sys.exit(f"Configuration error: {exc}")
