"""Shared short-lived state: cache entries, rate windows, cool-downs, breaker.

Every operation here is atomic on its own, so the gateway never does a
read-then-write that two processes could interleave. Values are text
(JSON made by ``codec``), never pickled objects, in every store alike.

``MemoryStore`` keeps the state in this process: the default, enough for
one process. ``RedisStore`` (``redis_store.py``) offers the same methods
over Redis, for any number of processes and hosts.
"""
from __future__ import annotations

import bisect
import collections
import threading

from ..clock import Clock


class MemoryStore:
    """A thread-safe in-process store with per-key expiry (wall time from ``clock``)."""

    def __init__(self, clock: Clock | None = None):
        self._clock = clock or Clock()
        self._data: dict[str, tuple[object, float | None]] = {}
        self._windows: dict[str, list[float]] = collections.defaultdict(list)
        self._lock = threading.Lock()

    # -- plain keys with a lifetime ----------------------------------------------

    def _live(self, key, now):
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def ping(self) -> bool:
        """Always True: this store is the process's own memory."""
        return True

    def get(self, key: str) -> str | None:
        """The text stored under ``key``, or ``None`` when absent or expired."""
        with self._lock:
            item = self._live(key, self._clock.time())
            return None if item is None else item[0]

    def get_many(self, *keys: str) -> list[str | None]:
        """``get`` for several keys at once."""
        return [self.get(k) for k in keys]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (for ever when ``None``)."""
        with self._lock:
            self._data[key] = (value, None if ttl is None else self._clock.time() + ttl)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def remaining(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` when it is absent (or never expires)."""
        with self._lock:
            now = self._clock.time()
            item = self._live(key, now)
            if item is None or item[1] is None:
                return None
            return item[1] - now

    def claim(self, key: str, ttl: float) -> bool:
        """Set ``key`` for ``ttl`` seconds only if it is absent; True when this call set it."""
        with self._lock:
            now = self._clock.time()
            if self._live(key, now) is not None:
                return False
            self._data[key] = ("1", now + ttl)
            return True

    def incr(self, key: str, ttl: float) -> int:
        """Add one to the counter ``key`` (which lives ``ttl`` seconds from its first count)."""
        with self._lock:
            now = self._clock.time()
            item = self._live(key, now)
            count = (int(item[0]) if item else 0) + 1
            self._data[key] = (str(count), item[1] if item else now + ttl)
            return count

    # -- a moving-window counter ---------------------------------------------------

    def take(self, key: str, limit: int, window: float) -> tuple[bool, float]:
        """Count one event if fewer than ``limit`` are in the last ``window`` seconds.

        Returns ``(taken, seconds_until_one_frees)``. Callers may pass
        different limits for one key: a lower limit keeps the rest for others.
        """
        with self._lock:
            now = self._clock.time()
            hits = self._windows[key]
            del hits[:bisect.bisect_right(hits, now - window)]
            if len(hits) >= limit:
                # the count drops below ``limit`` when the hit at len - limit leaves
                return False, max(0.0, hits[len(hits) - limit] + window - now) if limit else window
            bisect.insort(hits, now)
            return True, 0.0

    def count(self, key: str, window: float) -> int:
        """Events counted by ``take`` in the last ``window`` seconds."""
        with self._lock:
            now = self._clock.time()
            hits = self._windows.get(key, [])
            return len(hits) - bisect.bisect_right(hits, now - window)
