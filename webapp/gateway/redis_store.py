"""The shared store on Redis: one cache, budget, cool-down and breaker for
every process and host that uses the same ``REDIS_URL``.

Each method does its work in one Redis command or one Lua script, so two
processes can never interleave a read and a write (no 31st call slips
through, no breaker failure is lost). Windows use Redis's own clock
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
from .store import MemoryStore

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
