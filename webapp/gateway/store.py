"""Shared short-lived state: cache entries, rate windows, cool-downs, breaker.

Every operation here is atomic on its own, so the gateway never does a
read-then-write that two processes could interleave. Values are text
(JSON made by ``codec``), never pickled objects, in every store alike.

Besides plain keys and windows, a store does the gateway's bookkeeping for
one upstream call in three operations, each one round trip to Redis:
``look`` (the cached readings, counting a hit), ``admit`` (the single-flight
lock, the cool-down, the breaker and the budget, in that order) and
``settle`` (what the call's outcome changes, the reading stored with it and
the lock let go).

``MemoryStore`` keeps the state in this process: the default, enough for
one process. ``RedisStore`` (``redis_store.py``) offers the same methods
over Redis, for any number of processes and hosts.
"""
from __future__ import annotations

import bisect
import collections
import re
import threading
from dataclasses import dataclass
from typing import NamedTuple

from ..clock import Clock

#: a value that begins ``{"at":<milliseconds since the epoch>`` is stamped with that
#: moment (``codec`` writes readings so): ``look`` and ``admit`` tell a fresh one by it
STAMP = re.compile(r'\{"at":(\d+)[,}]')
#: counters named in ``look``, ``admit`` and ``settle`` are totals: kept ten years
COUNTER_TTL = 10 * 365 * 86400


def stamp(text: str | None) -> int | None:
    """The moment ``text`` is stamped with (see ``STAMP``), or ``None``."""
    found = STAMP.match(text) if text else None
    return int(found.group(1)) if found else None


def stamped_after(text: str | None, moment: int | None) -> bool:
    """Whether ``text`` is stamped later than ``moment`` (never, when ``moment`` is None)."""
    at = stamp(text)
    return moment is not None and at is not None and at > moment


@dataclass(frozen=True)
class Guard:
    """Where one API key's guard keeps its state in the store, and its limits:
    what ``admit`` checks before an upstream call and ``settle`` updates after it."""

    #: present while a 429's Retry-After lasts; its value is that 429's request ID
    cooldown: str
    #: present while the breaker is open
    breaker_open: str
    #: calls failed in a row (the count lives ``failures_ttl`` from its first)
    failures: str
    #: held by the one call that tries the service again once the breaker half-opens
    probe: str
    #: the moving window of calls made
    budget: str
    #: the counter of calls the guard held back
    declined: str
    threshold: int
    breaker_cooldown: float
    failures_ttl: float
    window: float = 60.0


@dataclass(frozen=True)
class Flight:
    """A read that goes upstream only as the holder of ``lock`` (for ``hold`` seconds),
    and not at all when the value at ``key`` is stamped after ``fresh_after``."""

    key: str
    lock: str
    hold: float
    fresh_after: int | None


class Verdict(NamedTuple):
    """What ``admit`` decided.

    ``kind`` is "go" (the call may go), "fresh" (``text`` is the flight's value,
    stamped after its ``fresh_after``), "busy" (another holds the flight's lock), or
    a refusal: "cooling" (``text`` is the 429's request ID), "open", "probing"
    (another call is trying the service again) or "spent"; ``wait`` is the
    seconds until a refusal may change.
    """

    kind: str
    wait: float = 0.0
    text: str | None = None


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
            return self._remaining(key, self._clock.time())

    def _remaining(self, key, now):
        item = self._live(key, now)
        return None if item is None or item[1] is None else item[1] - now

    def claim(self, key: str, ttl: float) -> bool:
        """Set ``key`` for ``ttl`` seconds only if it is absent; True when this call set it."""
        with self._lock:
            return self._claim(key, ttl, self._clock.time())

    def _claim(self, key, ttl, now):
        if self._live(key, now) is not None:
            return False
        self._data[key] = ("1", now + ttl)
        return True

    def incr(self, key: str, ttl: float) -> int:
        """Add one to the counter ``key`` (which lives ``ttl`` seconds from its first count)."""
        with self._lock:
            return self._incr(key, ttl, self._clock.time())

    def _incr(self, key, ttl, now):
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
            return self._take(key, limit, window, self._clock.time())

    def _take(self, key, limit, window, now):
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

    # -- the gateway's bookkeeping, one operation each -------------------------------

    def look(self, keys: list[str], *, fresh_after: list[int | None] | None = None,
             count: str | None = None) -> list[str | None]:
        """The values of ``keys``; one is added to the counter ``count`` when every value
        is stamped after its moment in ``fresh_after``."""
        with self._lock:
            now = self._clock.time()
            texts = [None if (item := self._live(key, now)) is None else item[0]
                     for key in keys]
            if count and fresh_after and all(map(stamped_after, texts, fresh_after)):
                self._incr(count, COUNTER_TTL, now)
            return texts

    def admit(self, guard: Guard, limit: int, *, flight: Flight | None = None,
              holding: str | None = None, counts=()) -> Verdict:
        """Whether an upstream call may go now, with ``limit`` calls of ``guard``'s
        budget a window open to it (see ``Verdict``); the counters ``counts`` are
        added to either way. With a ``flight``, its value and lock are looked at first
        and the lock taken; a refusal lets go of that lock, or of ``holding``."""
        with self._lock:
            now = self._clock.time()
            for name in counts:
                self._incr(name, COUNTER_TTL, now)
            if flight is not None:
                item = self._live(flight.key, now)
                if item is not None and stamped_after(item[0], flight.fresh_after):
                    return Verdict("fresh", text=item[0])
                if not self._claim(flight.lock, flight.hold, now):
                    return Verdict("busy")
                holding = flight.lock
            verdict = self._guarded(guard, limit, now)
            if verdict.kind != "go":
                if holding is not None:
                    self._data.pop(holding, None)
                self._incr(guard.declined, COUNTER_TTL, now)
            return verdict

    def _guarded(self, guard, limit, now) -> Verdict:
        """The cool-down, the breaker (one probe at a time once it half-opens), the
        budget: the first that refuses, or "go" with one call taken from the budget."""
        left = self._remaining(guard.cooldown, now)
        if left is not None:
            return Verdict("cooling", left, self._data[guard.cooldown][0])
        left = self._remaining(guard.breaker_open, now)
        if left is not None:
            return Verdict("open", left)
        failures = self._live(guard.failures, now)
        probing = failures is not None and int(failures[0]) >= guard.threshold
        if probing and not self._claim(guard.probe, guard.breaker_cooldown, now):
            return Verdict("probing", guard.breaker_cooldown / 10)
        taken, wait = self._take(guard.budget, limit, guard.window, now)
        if not taken:
            if probing:
                self._data.pop(guard.probe, None)
            return Verdict("spent", wait)
        return Verdict("go")

    def settle(self, guard: Guard, *, outcome: str | None = None, counts=(),
               put: tuple[str, str, float] | None = None,
               cooldown: tuple[str, float] | None = None, drop=()) -> None:
        """What a call's end changes: with ``outcome`` "ok" the service answered (the
        breaker closes), with "failed" one more failure counts towards opening it; then
        ``put`` stores ``(key, text, ttl)``, ``cooldown`` starts one ``(request ID, ttl)``,
        the keys in ``drop`` go and the counters in ``counts`` are added to."""
        with self._lock:
            now = self._clock.time()
            if outcome == "ok":
                for key in (guard.failures, guard.breaker_open, guard.probe):
                    self._data.pop(key, None)
            elif outcome == "failed" and self._incr(
                    guard.failures, guard.failures_ttl, now) >= guard.threshold:
                self._data[guard.breaker_open] = ("1", now + guard.breaker_cooldown)
                self._data.pop(guard.probe, None)
            if put is not None:
                self._data[put[0]] = (put[1], now + put[2])
            if cooldown is not None:
                self._data[guard.cooldown] = (cooldown[0], now + cooldown[1])
            for key in drop:
                self._data.pop(key, None)
            for name in counts:
                self._incr(name, COUNTER_TTL, now)
