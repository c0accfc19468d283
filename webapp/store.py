"""Shared short-lived state: cache entries, rate windows, cool-downs, breaker.

``MemoryStore`` keeps it in this process. Everything else talks to the
small interface below (get/set with a lifetime, a sliding-window counter),
so a Redis-backed store with the same four methods can replace it when
the dashboard runs as several processes.
"""
from __future__ import annotations

import collections
import threading
import time


class MemoryStore:
    """A thread-safe in-process store with per-key expiry."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._data: dict = {}
        self._windows: dict = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return default
            value, expires = item
            if expires is not None and expires <= self._clock():
                del self._data[key]
                return default
            return value

    def set(self, key, value, ttl: float | None = None):
        with self._lock:
            self._data[key] = (value, None if ttl is None else self._clock() + ttl)

    def delete(self, key):
        with self._lock:
            self._data.pop(key, None)

    def take(self, key, limit: int, window: float) -> tuple[bool, float]:
        """Count one event in a sliding ``window`` if fewer than ``limit`` are in it.

        Returns ``(taken, seconds_until_one_frees)``.
        """
        now = self._clock()
        with self._lock:
            hits = self._windows[key]
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return False, hits[0] + window - now
            hits.append(now)
            return True, 0.0

    def count(self, key, window: float) -> int:
        """Events counted by ``take`` in the last ``window`` seconds."""
        now = self._clock()
        with self._lock:
            return sum(1 for t in self._windows.get(key, ()) if t > now - window)
