"""The work a long-running process does besides its main job, on one thread.

Every few seconds, each task in ``TASKS`` runs in an app context of its
own: settlements kept while the database was busy are written and attempts
left pending too long are marked, due alert deliveries go out, and expired
sign-in sessions are purged (each task no more often than it asks). Every
web process runs it from its start (``processes.serve``), and so does
``flask billing poll --every``; a new alert wakes it at once.
"""
from __future__ import annotations

import logging
import threading

from ..database import mark_busy, missing_schema, say_schema_missing, unavailable
from .alerting.deliveries import configured, deliver_due, deliveries_due
from .checkouts.settlement import settle_kept
from .sessions import purge_expired

log = logging.getLogger(__name__)


def _settle_checkouts(app, now):
    settle_kept(app, now)


def _deliver_alerts(app, now):
    if configured(app.config):
        deliver_due(app, now)


def _purge_sessions(app, now):
    purge_expired(now)


#: (name, task, at most once every this many seconds)
TASKS = (("checkout settlements", _settle_checkouts, 0),
         ("alert deliveries", _deliver_alerts, 0),
         ("expired sessions", _purge_sessions, 300))


class Worker:
    """The process's background thread: runs ``TASKS`` every ``every`` seconds, and at
    once when woken."""

    def __init__(self, app, every: float):
        self.app = app
        self.every = every
        self._wake = threading.Event()
        self._last_run: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="background", daemon=True)
        self._thread.start()

    def wake(self):
        self._wake.set()

    def _run(self):
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            self.run_due()

    def run_due(self):
        """Run each task of ``TASKS`` whose spacing has passed, each in an app context of
        its own; raises nothing, so the thread outlives a bad moment of the database.

        A task the database could not serve (busy, restarted, connection ended) has not
        run: it is due again next round, and the log says so once per busy spell
        (``mark_busy``), not with a traceback each time. A database without the
        dashboard's tables is said once too; anything else is a bug, logged whole."""
        clock = self.app.extensions["clock"]
        for name, task, spacing in TASKS:
            if clock.monotonic() - self._last_run.get(name, -spacing - 1) < spacing:
                continue
            self._last_run[name] = clock.monotonic()
            try:
                with self.app.app_context():
                    task(self.app, clock.now())
            except Exception as exc:
                if missing_schema(exc):
                    say_schema_missing(self.app, exc)
                elif unavailable(exc):
                    del self._last_run[name]
                    mark_busy(self.app, exc)
                else:
                    log.exception("background task %r failed; trying again shortly", name)


_lock = threading.Lock()


def worker(app) -> Worker:
    """The app's background worker, started on first use (a web process starts it at
    once), so whatever any process queued is handled within ``ALERT_SEND_EVERY``
    seconds without waiting for this one to do something itself."""
    with _lock:
        found = app.extensions.get("background_worker")
        if found is None:
            found = app.extensions["background_worker"] = Worker(
                app, app.config["ALERT_SEND_EVERY"])
        return found


@deliveries_due.connect
def _deliveries_due(app, **_):
    """New alert deliveries are due: wake this process's worker (starting it if need be)."""
    worker(app).wake()
