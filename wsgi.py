"""The WSGI entry point: ``gunicorn wsgi:app``."""
import sys

from webapp import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:  # a deployment mistake: say which setting, not a traceback
    sys.exit(f"Configuration error: {exc}")
