"""The WSGI entry point: ``gunicorn wsgi:app``."""
import sys

from webapp import ConfigError, create_app, start_web

try:
    app = start_web(create_app())
except ConfigError as exc:  # a deployment mistake: say which setting, not a traceback
    sys.exit(f"Configuration error: {exc}")
