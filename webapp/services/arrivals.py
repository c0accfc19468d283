"""What happens to each balance the dashboard reads upstream (``on_billing_read``):
it is recorded in the history, then checked against the alert rules -- exactly
once, in arrival order, in the process that read it.

Neither is on a page's path. A reading that arrives while a page is being
served is handled after that page has been answered (the end of the response
wakes the process's ``arrivals`` thread, which also looks on its own every
few seconds, should a response never be closed). The page does not wait for
the write: what it draws from the history, it draws with its reading in it
(``history.readings.with_reading``), and the alert check then finds that
history worked out already.

Outside a request (the poller) the thread is woken at once. Whoever needs
what a reading did *now* -- the return from a checkout, whose notice says
whether the reading shows the payment; the poller, before it sends what
fired; a test -- calls ``settle``.
"""
from __future__ import annotations

import logging
import threading
from collections import deque

from flask import after_this_request, has_request_context

from ..database import busy
from .alerting import deliveries
from .history import readings

log = logging.getLogger(__name__)

#: how long the thread sleeps between looks when nobody wakes it (seconds)
LOOK_EVERY = 5.0
#: looks with nothing to do before the thread ends (the next reading starts another)
IDLE_LOOKS = 12


def reading_arrived(app, reading) -> None:
    """Queue ``reading`` to be recorded and checked (see the module docstring)."""
    arrivals(app).queue(reading)


def settle(app) -> None:
    """Return once every reading that arrived so far has been recorded and checked
    (doing on this thread what the ``arrivals`` thread has not begun)."""
    arrivals(app).settle()


class Arrivals:
    """The readings a process has yet to record and check, and the thread that works
    through them, one at a time and in order, so each is handled exactly once."""

    def __init__(self, app):
        self.app = app
        self._queue: deque = deque()
        self._working = threading.Lock()  # held while readings are being handled
        self._wake = threading.Event()
        self._thread_lock = threading.Lock()  # a reading queued never finds no thread
        self._thread: threading.Thread | None = None

    def queue(self, reading) -> None:
        """Owe ``reading`` its handling: after the response when there is one, else now."""
        with self._thread_lock:
            self._queue.append(reading)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="arrivals",
                                                daemon=True)
                self._thread.start()
        if has_request_context():
            @after_this_request
            def _after_the_response(response):
                response.call_on_close(self._wake.set)
                return response
        else:
            self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the thread is there (it ends after ``IDLE_LOOKS`` quiet looks)."""
        return self._thread is not None

    def settle(self) -> None:
        with self._working:
            while self._queue:
                self._handle(self._queue.popleft())

    def _run(self):
        idle = 0
        while True:
            woken = self._wake.wait(LOOK_EVERY)
            self._wake.clear()
            try:
                self.settle()
            except Exception:  # the thread must outlive one bad reading
                log.exception("a balance reading could not be handled")
            with self._thread_lock:
                idle = 0 if woken or self._queue else idle + 1
                if idle >= IDLE_LOOKS:  # a quiet process holds no thread for it
                    self._thread = None
                    return

    def _handle(self, reading) -> None:
        """Record ``reading``, then check the alert rules against it. Never raises for
        the database: a busy one skips what is left (the next reading does it)."""
        app = self.app
        with app.app_context():
            if busy(app):
                return
            readings.record(reading.value, reading.fetched_at,
                            keep_days=app.config["HISTORY_DAYS"])
            if busy(app):  # the write found it busy: waiting again to check helps nobody
                return
            deliveries.evaluate(app, reading.value, reading.fetched_at)


_lock = threading.Lock()


def arrivals(app) -> Arrivals:
    """The app's arrivals (their thread starts with a reading, ends after a quiet minute)."""
    with _lock:
        found = app.extensions.get("arrivals")
        if found is None:
            found = app.extensions["arrivals"] = Arrivals(app)
        return found
