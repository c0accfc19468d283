"""The one clock the dashboard reads time from, injected so tests can move it.

Two kinds of time, both from here: *wall* time (``now``, ``time``) for
anything stored or shared between processes and hosts, and *monotonic*
time for deadlines inside one request, which must not jump when the
system clock is set.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone


class Clock:
    """The system's clocks."""

    def now(self) -> datetime:
        """Wall time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), timezone.utc)

    def time(self) -> float:
        """Wall time in seconds since the epoch (comparable across hosts)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines within this process)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FrozenClock(Clock):
    """A clock for tests: wall time stands still until ``advance`` moves it.

    Monotonic time moves with it, so a deadline set before ``advance`` passes too.
    """

    def __init__(self, start: float | datetime | None = None):
        if isinstance(start, datetime):
            start = start.timestamp()
        self._wall = time.time() if start is None else start
        self._offset = 0.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._offset += seconds


def app_clock() -> Clock:
    """The running app's clock (``create_app`` keeps it in ``app.extensions``)."""
    from flask import current_app

    return current_app.extensions["clock"]
