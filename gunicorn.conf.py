"""gunicorn settings, read automatically by ``gunicorn wsgi:app``.

The upstream budget, the read cache, single-flight, the 429 cool-down and
the circuit breaker must be shared by every process that uses the API key.
With ``REDIS_URL`` set they live in Redis, so any number of workers (on any
number of hosts) is safe: the default is two per core, ``WEB_CONCURRENCY``
overrides it. Without ``REDIS_URL`` they live in the process, so exactly
one process runs (with threads); asking for more -- ``WEB_CONCURRENCY`` or
``-w`` on the command line -- stops start-up, because each process would
spend its own budget against the key's shared limit.

gunicorn belongs behind a buffering reverse proxy (nginx; the README has an
example): each of its threads reads one request at a time, however slowly
the client sends it, so a few clients trickling their headers would hold
every thread. It listens on loopback unless ``BIND`` says otherwise, and
says so in the log when it listens further without ``TRUST_PROXY``.
"""
import ipaddress
import multiprocessing
import os

_shared = bool(os.environ.get("REDIS_URL", "").strip())

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or
              (multiprocessing.cpu_count() * 2 if _shared else 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30           # a page's upstream deadline (8 s) stays well under this
graceful_timeout = 10  # requests in flight at a restart get this long to finish
# longer than the proxy keeps an idle upstream connection (nginx's
# keepalive_timeout in an upstream block is 60 s by default: the README's
# example sets 30 s), so the proxy, not gunicorn, closes an idle one and never
# sends a request down a connection gunicorn has just closed
keepalive = 35
accesslog = None


def on_starting(server):
    """Check the settings once, in the master, before any worker starts: a worker
    that fails to load would only be started again, forever. Refuse several
    processes without a shared store (the command line's ``-w`` has been
    applied by now, so this sees the real number). Wait for a database that is
    still starting, within ``DATABASE_START_WAIT_SECONDS``, or refuse in one line."""
    import sys

    from webapp.database import wait_for_database
    from webapp.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        if server.cfg.workers > 1 and not _shared:
            raise ConfigError(
                f"{server.cfg.workers} worker processes need REDIS_URL. Without it the "
                "upstream budget, cache and circuit breaker live in each process, so several "
                "processes would together exceed the API key's limit. Set REDIS_URL (for "
                "example redis://127.0.0.1:6379/0) or run one worker.")
        wait_for_database(settings["SQLALCHEMY_DATABASE_URI"],
                          settings["DATABASE_WAIT_SECONDS"],
                          settings["DATABASE_START_WAIT_SECONDS"])
    except ConfigError as exc:
        sys.exit(f"Configuration error: {exc}")
    _warn_of_a_bare_gunicorn(server, settings)


def _warn_of_a_bare_gunicorn(server, settings):
    """Listening beyond loopback without ``TRUST_PROXY``: either clients reach gunicorn
    directly (slow ones can hold every thread) or a proxy's clients all share its
    address's sign-in limit. Either way, worth a line in the log."""
    if settings["TRUST_PROXY"]:
        return
    for address in server.cfg.address:
        host = address[0] if isinstance(address, tuple) else None
        try:
            loopback = host is None or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            server.log.warning(
                "gunicorn listens on %s without TRUST_PROXY: put a buffering reverse proxy "
                "(nginx) in front of it and set TRUST_PROXY, as the README's deployment "
                "section shows; clients that send slowly would otherwise hold its threads",
                host)


def post_fork(server, worker):
    """In each worker, before it serves: the real number of workers for the app to
    divide the upstream budget by while Redis cannot be reached (``WEB_CONCURRENCY``:
    the command line's ``-w`` may differ from this file's default); and, when the
    master loaded the app (``--preload``), that app readied for this process."""
    os.environ["WEB_CONCURRENCY"] = str(server.cfg.workers)
    app = worker.app.callable  # the app the master loaded, or None (loaded after this)
    if app is not None:
        from webapp.processes import forked

        forked(app)


#: how many requests a worker serves between giving freed memory back to the system
TRIM_EVERY = 16
_served = 0


def post_request(worker, req, environ, resp):
    """Every ``TRIM_EVERY`` requests, hand the memory freed since back to the system
    (glibc's ``malloc_trim``): each of the worker's threads allocates from a heap of its
    own, and a freed page inside one stays the process's until trimmed -- about 3 MB a
    worker after a few hundred year charts, for nothing. Elsewhere than glibc, nothing."""
    global _served
    _served += 1
    if _served % TRIM_EVERY == 0 and _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 -- glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()
