"""The shared store on Redis: one cache, budget, cool-down and breaker for
every process and host that uses the same ``REDIS_URL``.

Each method does its work in one Redis command or one Lua script, so two
processes can never interleave a read and a write (no 31st call slips
through, no breaker failure is lost), and each is one round trip: the
gateway's bookkeeping for an upstream read is ``look``, ``admit`` and
``settle``, three round trips in all. Windows use Redis's own clock
(``TIME``) and lifetimes use key expiry, so no host's clock is trusted.

Redis trouble is a fault like any other: when Redis cannot be reached in
``op_timeout`` seconds, the operation is answered from a local
``MemoryStore`` instead, for at least ``recheck`` seconds before Redis is
tried again. Cache entries are mirrored locally, so last known figures
survive an outage; the local budget is this process's conservative share
(the budget over the number of processes last seen alive -- before any is
seen, as when Redis was never reached, over this host's gunicorn workers).
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..clock import Clock
from .store import COUNTER_TTL, Flight, Guard, MemoryStore, Verdict

log = logging.getLogger(__name__)

#: processes assumed to share the budget at least, until heartbeats have been seen for a
#: while: a host knows its own workers (``expected_processes``), not other hosts'
ASSUMED_PROCESSES = 4
#: the fallback divides by the most processes seen alive over this long
PROCESS_MEMORY = 300.0
#: a process that has not been heard from for this long no longer counts
HEARTBEAT_TTL_MS = 60_000
HEARTBEAT_EVERY = 10.0

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  local edge = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return {0, tonumber(edge[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
"""

# the counters a script adds to (``bump``) live COUNTER_TTL from their first count
_BUMP = """
local function bump(key, ttl)
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ttl) end
end
"""

# the stamp a value begins with, as ``store.STAMP`` reads it
_STAMPED_AFTER = """
local function stamped_after(text, moment)
  local at = text and string.match(text, '^{"at":(%d+)[,}]')
  return at ~= nil and at ~= false and moment ~= '' and tonumber(at) > tonumber(moment)
end
"""

# KEYS: the values, then the counter when ARGV[1] is '1'; ARGV[2..]: the moment each
# value must be stamped after for the counter to count ('' for none), then its lifetime
_LOOK = _BUMP + _STAMPED_AFTER + """
local counting = ARGV[1] == '1'
local n = #KEYS - (counting and 1 or 0)
local out, fresh = {}, counting
for i = 1, n do
  local text = redis.call('GET', KEYS[i])
  out[2 * i - 1] = text
  out[2 * i] = text and redis.call('PTTL', KEYS[i]) or -2
  if not stamped_after(text, ARGV[i + 1]) then fresh = false end
end
if fresh then bump(KEYS[n + 1], ARGV[n + 2]) end
return out
"""

# KEYS: cooldown, breaker_open, failures, probe, budget, declined (the guard), the lock
# ('' for none), the flight's value ('' for none), then the counters to add to.
# ARGV: limit, window ms, a unique member, threshold, probe ms, mode ('claim' the lock,
# 'hold' it already, or ''), the lock's ms, the moment to be stamped after ('' for
# none), the counters' ms. Returns {kind, wait ms, text} as ``store.Verdict``.
_ADMIT = _BUMP + _STAMPED_AFTER + """
for i = 9, #KEYS do bump(KEYS[i], ARGV[9]) end
local lock = KEYS[7]
if ARGV[6] == 'claim' then
  local text = redis.call('GET', KEYS[8])
  if stamped_after(text, ARGV[8]) then return {'fresh', 0, text} end
  if not redis.call('SET', lock, '1', 'PX', ARGV[7], 'NX') then return {'busy', 0} end
end
local function refuse(kind, wait, text)
  if ARGV[6] ~= '' then redis.call('DEL', lock) end
  bump(KEYS[6], ARGV[9])
  return {kind, wait, text}
end
local left = redis.call('PTTL', KEYS[1])
if left > 0 then return refuse('cooling', left, redis.call('GET', KEYS[1])) end
left = redis.call('PTTL', KEYS[2])
if left > 0 then return refuse('open', left) end
local probing = (tonumber(redis.call('GET', KEYS[3])) or 0) >= tonumber(ARGV[4])
if probing and not redis.call('SET', KEYS[4], '1', 'PX', ARGV[5], 'NX') then
  return refuse('probing', math.floor(tonumber(ARGV[5]) / 10))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[5])
if n >= limit then
  if probing then redis.call('DEL', KEYS[4]) end
  local wait = window
  if limit > 0 then
    local edge = redis.call('ZRANGE', KEYS[5], n - limit, n - limit, 'WITHSCORES')
    wait = tonumber(edge[2]) + window - now
  end
  return refuse('spent', wait)
end
redis.call('ZADD', KEYS[5], now, ARGV[3])
redis.call('PEXPIRE', KEYS[5], window)
return {'go', 0}
"""

# KEYS: failures, breaker_open, probe, cooldown (the guard), the key to put ('' for
# none), then the keys to drop and the counters to add to. ARGV: outcome ('ok',
# 'failed' or ''), threshold, failures ms, breaker ms, the text to put and its ms, the
# cool-down's request ID and ms ('' for none), how many keys to drop, the counters' ms.
_SETTLE = _BUMP + """
if ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
elseif ARGV[1] == 'failed' then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  if n >= tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
    redis.call('DEL', KEYS[3])
  end
end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], ARGV[5], 'PX', ARGV[6]) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8]) end
local drops = tonumber(ARGV[9])
for i = 6, 5 + drops do redis.call('DEL', KEYS[i]) end
for i = 6 + drops, #KEYS do bump(KEYS[i], ARGV[10]) end
return 1
"""

_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
"""


def connect(url: str, op_timeout: float = 0.5) -> redis.Redis:
    """A client for ``url`` that gives up on a slow Redis quickly and never retries.

    Raises ``ValueError`` for a malformed URL.
    """
    return redis.Redis.from_url(url, socket_timeout=op_timeout,
                                socket_connect_timeout=op_timeout,
                                retry=Retry(NoBackoff(), 0), health_check_interval=30)


def expected_processes() -> int:
    """The processes this one expects to share the budget with before any heartbeat:
    this host's gunicorn workers (``gunicorn.conf.py`` puts their number in
    ``WEB_CONCURRENCY`` in each), and at least ``ASSUMED_PROCESSES``."""
    try:
        workers = int(os.environ.get("WEB_CONCURRENCY") or 1)
    except ValueError:
        workers = 1
    return max(ASSUMED_PROCESSES, workers)


def where(url: str) -> str:
    """``host:port`` (or the socket's path) of a Redis URL, for messages: never the
    password it may carry."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


def _text(raw: bytes | None) -> str | None:
    """Stored bytes as text; bytes that are not UTF-8 (nobody here wrote them) as absent."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("ignoring a value in Redis that is not text")
        return None


class RedisStore:
    """``MemoryStore``'s methods over Redis, with a local fallback while Redis is away."""

    def __init__(self, url: str, *, prefix: str = "", clock: Clock | None = None,
                 op_timeout: float = 0.5, recheck: float = 1.0):
        self._clock = clock or Clock()
        self._redis = connect(url, op_timeout)
        #: where Redis is (``host:port``), for messages
        self.where = where(url)
        self._local = MemoryStore(self._clock)
        self._prefix = prefix
        self._recheck = recheck
        self._down_until = 0.0
        self._down = False
        # (when, how many): a process just started, or after Redis came back
        # empty, sees few heartbeats yet, so the largest recent count is used;
        # until the first has been remembered for a while, at least the expected
        self._started = self._clock.monotonic()
        self._counts: list[tuple[float, int]] = []
        self._next_heartbeat = 0.0
        self._nonce = secrets.token_hex(4)
        self._state_lock = threading.Lock()
        self._take = self._redis.register_script(_TAKE)
        self._incr = self._redis.register_script(_INCR)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._count = self._redis.register_script(_COUNT)
        self._look = self._redis.register_script(_LOOK)
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)

    def __repr__(self):  # the URL may carry a password
        return "RedisStore()"

    @property
    def available(self) -> bool:
        """False while this process is working from its local fallback."""
        return not self._down

    @property
    def processes(self) -> int:
        """The most processes seen sharing this Redis lately (what the fallback budget is
        divided by); in the first minutes, or before any heartbeat, at least those
        expected (read when asked: a worker learns its count after the app is made)."""
        seen = [count for _, count in self._counts]
        if not seen or self._clock.monotonic() - self._started < PROCESS_MEMORY:
            seen.append(expected_processes())
        return max(seen)

    def ping(self) -> bool:
        """True when Redis answers now."""
        try:
            return bool(self._redis.ping())
        except (redis.RedisError, OSError):
            return False

    # -- the fallback ------------------------------------------------------------

    def _run(self, remote, local):
        """``remote()`` on Redis, or ``local()`` when Redis is away (and for a moment after)."""
        if self._clock.monotonic() < self._down_until:
            return local()
        try:
            result = remote()
            self.heartbeat()
        except (redis.RedisError, OSError) as exc:
            with self._state_lock:
                self._down_until = self._clock.monotonic() + self._recheck
                if not self._down:
                    self._down = True
                    log.warning("Redis at %s is not answering (%s); using this process's "
                                "own state and a 1/%d share of the budget until it is back",
                                self.where, type(exc).__name__, self.processes)
            return local()
        if self._down:
            with self._state_lock:
                if self._down:
                    self._down = False
                    log.warning("Redis at %s is back; shared state resumed", self.where)
        return result

    def heartbeat(self, force: bool = False) -> None:
        """Say this process is alive (every few seconds, or now when ``force``d),
        and learn how many others are. Raises ``redis.RedisError``."""
        now = self._clock.monotonic()
        if now < self._next_heartbeat and not force:
            return
        self._next_heartbeat = now + HEARTBEAT_EVERY
        member = f"{socket.gethostname()}:{os.getpid()}:{self._nonce}"
        count = int(self._heartbeat(keys=[self._prefix + "processes"],
                                    args=[member, HEARTBEAT_TTL_MS]))
        with self._state_lock:
            self._counts = [(t, c) for t, c in self._counts if t > now - PROCESS_MEMORY]
            self._counts.append((now, max(1, count)))

    # -- the store's methods ----------------------------------------------------------

    def get(self, key: str) -> str | None:
        return self.get_many(key)[0]

    def get_many(self, *keys: str) -> list[str | None]:
        """Values of ``keys`` in one round trip; each found value is mirrored locally."""
        def remote():
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            answers = pipe.execute()
            values = [_text(raw) for raw in answers[0::2]]
            for key, value, ttl in zip(keys, values, answers[1::2]):
                if value is not None:
                    self._local.set(key, value, ttl / 1000 if ttl and ttl > 0 else None)
            return values
        return self._run(remote, lambda: self._local.get_many(*keys))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._local.set(key, value, ttl)
        px = None if ttl is None else max(1, int(ttl * 1000))
        self._run(lambda: self._redis.set(key, value, px=px), lambda: None)

    def delete(self, *keys: str) -> None:
        self._local.delete(*keys)
        self._run(lambda: self._redis.delete(*keys), lambda: None)

    def remaining(self, key: str) -> float | None:
        def remote():
            ttl = self._redis.pttl(key)
            return ttl / 1000 if ttl is not None and ttl > 0 else None
        return self._run(remote, lambda: self._local.remaining(key))

    def claim(self, key: str, ttl: float) -> bool:
        px = max(1, int(ttl * 1000))
        return self._run(lambda: bool(self._redis.set(key, "1", px=px, nx=True)),
                         lambda: self._local.claim(key, ttl))

    def incr(self, key: str, ttl: float) -> int:
        return self._run(lambda: int(self._incr(keys=[key], args=[max(1, int(ttl * 1000))])),
                         lambda: self._local.incr(key, ttl))

    def take(self, key: str, limit: int, window: float) -> tuple[bool, float]:
        """The moving window of ``MemoryStore.take``, shared; while Redis is away,
        this process may take only its share of ``limit``."""
        def remote():
            taken, wait_ms = self._take(keys=[key], args=[limit, int(window * 1000),
                                                          secrets.token_hex(8)])
            return bool(taken), max(0.0, int(wait_ms) / 1000)
        share = max(1, limit // self.processes)
        return self._run(remote, lambda: self._local.take(key, share, window))

    def count(self, key: str, window: float) -> int:
        """Events counted by ``take`` in the last ``window`` seconds (by Redis's clock)."""
        return self._run(lambda: int(self._count(keys=[key], args=[int(window * 1000)])),
                         lambda: self._local.count(key, window))

    # -- the gateway's bookkeeping, one script each ---------------------------------------

    def look(self, keys: list[str], *, fresh_after: list[int | None] | None = None,
             count: str | None = None) -> list[str | None]:
        """``MemoryStore.look`` in one round trip; each found value is mirrored locally."""
        def remote():
            moments = ["" if m is None else m for m in (fresh_after or [None] * len(keys))]
            answers = self._look(keys=[*keys, *([count] if count else [])],
                                 args=["1" if count else "0", *moments, _ms(COUNTER_TTL)])
            values = [_text(raw) for raw in answers[0::2]]
            for key, value, ttl in zip(keys, values, answers[1::2]):
                if value is not None:
                    self._local.set(key, value, ttl / 1000 if ttl and ttl > 0 else None)
            return values
        return self._run(remote, lambda: self._local.look(keys, fresh_after=fresh_after,
                                                          count=count))

    def admit(self, guard: Guard, limit: int, *, flight: Flight | None = None,
              holding: str | None = None, counts=()) -> Verdict:
        """``MemoryStore.admit`` in one round trip; while Redis is away, this process
        may take only its share of ``limit``."""
        def remote():
            mode = "claim" if flight else "hold" if holding else ""
            kind, wait, *text = self._admit(
                keys=[guard.cooldown, guard.breaker_open, guard.failures, guard.probe,
                      guard.budget, guard.declined, flight.lock if flight else holding or "",
                      flight.key if flight else "", *counts],
                args=[limit, _ms(guard.window), secrets.token_hex(8), guard.threshold,
                      _ms(guard.breaker_cooldown), mode, _ms(flight.hold) if flight else 0,
                      "" if flight is None or flight.fresh_after is None
                      else flight.fresh_after, _ms(COUNTER_TTL)])
            return Verdict(kind.decode(), max(0.0, int(wait) / 1000),
                           _text(text[0]) if text else None)
        share = max(1, limit // self.processes)
        return self._run(remote, lambda: self._local.admit(guard, share, flight=flight,
                                                           holding=holding, counts=counts))

    def settle(self, guard: Guard, *, outcome: str | None = None, counts=(),
               put: tuple[str, str, float] | None = None,
               cooldown: tuple[str, float] | None = None, drop=()) -> None:
        """``MemoryStore.settle`` in one round trip; what it stores and drops is mirrored
        locally (the last figures and a cool-down survive an outage), the rest is done
        locally only while Redis is away."""
        self._local.settle(guard, put=put, cooldown=cooldown, drop=drop)
        key, text, ttl = put or ("", "", 0)
        request_id, pause = cooldown or ("", None)
        self._run(lambda: self._settle(
            keys=[guard.failures, guard.breaker_open, guard.probe, guard.cooldown, key,
                  *drop, *counts],
            args=[outcome or "", guard.threshold, _ms(guard.failures_ttl),
                  _ms(guard.breaker_cooldown), text, _ms(ttl), request_id,
                  "" if pause is None else _ms(pause), len(drop), _ms(COUNTER_TTL)]),
            lambda: self._local.settle(guard, outcome=outcome, counts=counts))


def _ms(seconds: float) -> int:
    """Seconds as Redis's whole milliseconds (at least one)."""
    return max(1, int(seconds * 1000))
