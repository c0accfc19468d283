"""gunicorn settings, read automatically by ``gunicorn wsgi:app``.

One process with threads: the upstream budget, the read cache and the
single-flight coalescing live in the process (a shared store can replace
them later), so more processes would each spend their own budget. Threads
give the concurrency; a page never holds a thread past UPSTREAM_DEADLINE.
"""
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30           # a page's upstream deadline (8 s) stays well under this
graceful_timeout = 10
accesslog = None
