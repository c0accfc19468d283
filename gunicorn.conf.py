"""gunicorn settings, read automatically by ``gunicorn wsgi:app``.

The upstream budget, the read cache, single-flight, the 429 cool-down and
the circuit breaker must be shared by every process that uses the API key.
With ``REDIS_URL`` set they live in Redis, so any number of workers (on any
number of hosts) is safe: the default is two per core, ``WEB_CONCURRENCY``
overrides it. Without ``REDIS_URL`` they live in the process, so exactly
one process runs (with threads); asking for more -- ``WEB_CONCURRENCY`` or
``-w`` on the command line -- stops start-up, because each process would
spend its own budget against the key's shared limit.
"""
import multiprocessing
import os

_shared = bool(os.environ.get("REDIS_URL", "").strip())

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or
              (multiprocessing.cpu_count() * 2 if _shared else 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30           # a page's upstream deadline (8 s) stays well under this
graceful_timeout = 10
accesslog = None


def on_starting(server):
    """Check the settings once, in the master, before any worker starts: a worker
    that fails to load would only be started again, forever. Refuse several
    processes without a shared store (the command line's ``-w`` has been
    applied by now, so this sees the real number)."""
    import sys

    from webapp.settings import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as exc:
        sys.exit(f"Configuration error: {exc}")
    if server.cfg.workers > 1 and not _shared:
        sys.exit(f"Configuration error: {server.cfg.workers} worker processes need REDIS_URL. "
                 "Without it the upstream budget, cache and circuit breaker live in each "
                 "process, so several processes would together exceed the API key's limit. "
                 "Set REDIS_URL (for example redis://127.0.0.1:6379/0) or run one worker.")
