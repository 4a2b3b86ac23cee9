"""gunicorn settings for Heroku-style hosting (the Procfile's ``web`` reads this file).

Values come from the environment so one file serves a laptop, CI and dynos.
"""

import os
import warnings

# The web workers are gevent's: one thread per process, a greenlet per connection, so a request
# waiting on PostgreSQL costs a greenlet switch instead of an OS thread's wake-up and a GIL
# hand-over, and a combined transaction's leader is not kept waiting for the GIL behind its
# process's other requests. Measured against gthread (16 threads) in alternating runs of
# bench/run.py: the App Proxy reserve on one hot SKU 2,034 vs 1,470 req/s, on 1,000 SKUs
# 1,774 vs 1,416, the REST reserve 2,416 vs 1,710, each with a lower p99 (bench/README.md).
# WEB_WORKER_CLASS=gthread (with WEB_THREADS) is the thread pool it replaced.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    # Before anything else is imported, so every lock, socket and wait of the app (psycopg
    # picks its green wait at import) is gevent's. gunicorn has imported ssl already but made
    # no SSL object with it; gevent's warning about that (repeated as each worker patches
    # again, a no-op) says nothing here.
    from gevent import monkey

    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl")
    monkey.patch_all()

import shutil  # noqa: E402
import tempfile  # noqa: E402

from gunicorn import glogging  # noqa: E402

# Prometheus multiprocess mode (shopify_app/observability/metrics.py): every worker writes its
# samples to files in one directory and /metrics sums them, so totals are exact across workers
# and across workers recycled by max_requests. It must be set before the app (and with it
# prometheus_client) is imported, which preload_app does right after this file is read.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir:
    shutil.rmtree(_metrics_dir, ignore_errors=True)  # counts of a previous run are not ours
    os.makedirs(_metrics_dir, exist_ok=True)
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bazico-metrics-")

if worker_class == "gevent":
    # psycopg's green wait is a poll object per wait; gevent's own wait is one watcher
    # (shopify_app/db/green_wait.py). Imported only now: the package's import loads
    # prometheus_client, which must see PROMETHEUS_MULTIPROC_DIR.
    from shopify_app.db import green_wait

    green_wait.install()

bind = [f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
# Heroku's Python buildpack sets WEB_CONCURRENCY from the dyno size.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads per worker, with WEB_WORKER_CLASS=gthread only: the request path mostly waits on
# PostgreSQL, so a thread pool per worker overlaps it; the more requests wait at once in a
# process, the more of them ride one combined reservation transaction (stock/combiner.py).
threads = int(os.environ.get("WEB_THREADS", "16"))
# Connections one worker may hold at once (with gevent, the requests it serves at once).
# Keep-alive connections stay with the worker that accepted them, and one worker can win most
# of a burst of new connections: uncapped, a measured run had one worker holding 63 of 64 and
# doing all the work at half the speed. 40 leaves the rest of a burst to the other workers.
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "40"))
# Under Heroku's 30 s router timeout and its 30 s SIGTERM-to-SIGKILL window.
timeout = 20
graceful_timeout = 20
# Longer than the router's 90 s idle keep-alive, so the router always closes first.
keepalive = 95
# Fail fast on a bad config in the master, and share the loaded code between workers.
preload_app = True
forwarded_allow_ips = "*"
# Recycle a worker after this many requests (0: never), with jitter so they do not all restart
# at once; metrics survive it (see above).
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
ACCESS_LOG = os.environ.get("ACCESS_LOG", "0") == "1"
accesslog = "-" if ACCESS_LOG else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's own lines in the same ECS JSON as the app's (shopify_app/observability/logs.py).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"ecs": {"()": "shopify_app.observability.logs.make_formatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "ecs",
            "stream": "ext://sys.stdout",
        }
    },
    # The app adds its own stdout handler to the root logger (logs.configure); none here.
    "root": {"level": loglevel.upper(), "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}


def post_fork(server, worker):
    """Drop pooled connections inherited from the master: a socket must not be shared."""
    from shopify_app.runtime import EXTENSION_KEY

    app = server.app.wsgi()
    app.extensions[EXTENSION_KEY].engine.dispose(close=False)


class _Logger(glogging.Logger):
    """gunicorn builds every request's access-log fields whenever logging is configured by
    dict, even with access logs off; skip that work unless ACCESS_LOG=1 (Heroku's router logs
    each request already)."""

    def access(self, resp, req, environ, request_time):
        if ACCESS_LOG:
            super().access(resp, req, environ, request_time)


logger_class = _Logger


def child_exit(server, worker):
    """A worker ended (recycled, crashed, stopped): its live gauges go, its counts stay."""
    from shopify_app.observability.metrics import mark_process_dead

    mark_process_dead(worker.pid)


# gunicorn 24+ opens a control socket at one fixed path per user; several services on one host
# (tests, benchmarks) would fight over it, and nothing here uses it.
control_socket_disable = True
