"""gunicorn settings for Heroku-style hosting (the Procfile's ``web`` reads this file).

Values come from the environment so one file serves a laptop, CI and dynos.
"""

import os

bind = [f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
# Heroku's Python buildpack sets WEB_CONCURRENCY from the dyno size.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads: the request path mostly waits on PostgreSQL, so a thread pool per worker overlaps it.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
# Under Heroku's 30 s router timeout and its 30 s SIGTERM-to-SIGKILL window.
timeout = 20
graceful_timeout = 20
# Longer than the router's 90 s idle keep-alive, so the router always closes first.
keepalive = 95
# Fail fast on a bad config in the master, and share the loaded code between workers.
preload_app = True
forwarded_allow_ips = "*"
accesslog = "-" if os.environ.get("ACCESS_LOG", "0") == "1" else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_fork(server, worker):
    """Drop pooled connections inherited from the master: a socket must not be shared."""
    from shopify_app.runtime import EXTENSION_KEY

    app = server.app.wsgi()
    app.extensions[EXTENSION_KEY].engine.dispose(close=False)


# gunicorn 24+ opens a control socket at one fixed path per user; several services on one host
# (tests, benchmarks) would fight over it, and nothing here uses it.
control_socket_disable = True
