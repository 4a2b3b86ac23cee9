"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi …``."""

import sys

from shopify_app import create_app
from shopify_app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line per problem, then a clean exit: a traceback would bury the message.
    print(exc, file=sys.stderr)
    sys.exit(3)
