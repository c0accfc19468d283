"""Every upstream call the dashboard makes goes through here.

The whole team shares one API key with a limit of 60 requests a minute,
so reads are cached and coalesced (single-flight), all calls spend from
the dashboard's own budget, a 429 starts a cool-down every request
respects, repeated failures open a circuit breaker, and a read that fails
for a transient reason may fall back to the last good figures for a
bounded time. Writes (POSTs) are never retried unless the request
provably never left.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone

from .giga import (AuthenticationError, GigaClient, GigaError, PermissionDenied,
                   RateLimited, Timeout, Unavailable)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """A value read from upstream, when it was read, and whether it is stale."""

    value: object
    fetched_at: datetime
    stale: bool = False
    error: GigaError | None = None


def _age(reading: Reading | None) -> float:
    """Seconds since ``reading`` was fetched; infinite when there is none."""
    if reading is None:
        return float("inf")
    return (datetime.now(timezone.utc) - reading.fetched_at).total_seconds()


class BillingGateway:
    """Cached, coalesced, budgeted and guarded access to one account's billing API."""

    def __init__(self, client: GigaClient, store, *, billing_ttl=30, plans_ttl=3600,
                 stale_max_age=600, budget_per_minute=30, get_retries=2,
                 breaker_threshold=5, breaker_cooldown=30, clock=time.monotonic):
        self.client = client
        self.store = store
        self.billing_ttl = billing_ttl
        self.plans_ttl = plans_ttl
        self.stale_max_age = stale_max_age
        self.budget_per_minute = budget_per_minute
        self.get_retries = get_retries
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        self.clock = clock
        # the key's fingerprint, never the key, names its shared state
        fp = hashlib.sha256((client._api_key or "").encode()).hexdigest()[:12]
        self._ns = f"giga:{fp}:"
        self._inflight: dict[str, Future] = {}
        self._inflight_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="giga-read")

    # -- reads ------------------------------------------------------------------

    def billing(self, deadline: float, *, fresh=False) -> Reading:
        """The account's billing now, from cache when young enough. Raises ``GigaError``."""
        return self._read("billing", self.client.get_billing, self.billing_ttl, deadline, fresh)

    def plans(self, deadline: float, *, fresh=False) -> Reading:
        """The plans on offer (cached much longer: they rarely change). Raises ``GigaError``."""
        return self._read("plans", self.client.list_plans, self.plans_ttl, deadline, fresh)

    def both(self, deadline: float, *, fresh_billing=False):
        """Billing and plans read side by side, not one after the other.

        Returns two results, each a ``Reading`` or the ``GigaError`` it raised.
        """
        plans = self._young("plans", self.plans_ttl)
        billing = None if fresh_billing else self._young("billing", self.billing_ttl)
        if plans is not None and billing is not None:
            return billing, plans  # the warm path: no thread hand-off at all
        plans_future = self._pool.submit(self._settle, self.plans, deadline)
        billing = self._settle(self.billing, deadline, fresh=fresh_billing)
        try:
            plans = plans_future.result(timeout=max(0.0, deadline - self.clock()) + 0.5)
        except FutureTimeout:
            plans = Timeout("The billing service did not answer in time.")
        return billing, plans

    def _young(self, name, ttl) -> Reading | None:
        """The cached reading of ``name`` if younger than ``ttl`` seconds."""
        cached = self.store.get(self._ns + name)
        return cached if _age(cached) < ttl else None

    def forget_billing(self):
        """Drop the cached balance so the next read is fresh (after an action)."""
        self.store.delete(self._ns + "billing")

    @staticmethod
    def _settle(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except GigaError as exc:
            return exc

    def _read(self, name, loader, ttl, deadline, fresh) -> Reading:
        key = self._ns + name
        cached: Reading | None = self.store.get(key)
        if not fresh and _age(cached) < ttl:
            return cached
        try:
            return self._single_flight(key, loader, deadline)
        except (AuthenticationError, PermissionDenied):
            raise  # never paper over a key problem with old figures
        except GigaError as exc:
            if cached is not None and (exc.transient or isinstance(exc, RateLimited)):
                age = _age(cached)
                if age <= self.stale_max_age:
                    # the budget or a cool-down saying no is routine under load
                    level = logging.DEBUG if isinstance(exc, (Unavailable, RateLimited)) \
                        else logging.WARNING
                    log.log(level, "serving %s from %ds ago: %r", name, age, exc)
                    return Reading(cached.value, cached.fetched_at, stale=True, error=exc)
            raise

    def _single_flight(self, key, loader, deadline) -> Reading:
        """Run ``loader`` once for all concurrent callers of ``key``."""
        with self._inflight_lock:
            future = self._inflight.get(key)
            leader = future is None
            if leader:
                future = self._inflight[key] = Future()
        if not leader:
            try:
                return future.result(timeout=max(0.0, deadline - self.clock()))
            except FutureTimeout:
                raise Timeout("The billing service did not answer in time.") from None
        try:
            value = self._call(loader, deadline, idempotent=True)
            reading = Reading(value, datetime.now(timezone.utc))
            # kept past its TTL on purpose: it is the stale fallback
            self.store.set(key, reading, ttl=max(self.stale_max_age, 1) + 60)
            future.set_result(reading)
            return reading
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)

    # -- writes -----------------------------------------------------------------

    def post(self, call, deadline: float):
        """Run a POST ``call(deadline=...)`` once; again only if it provably never left.

        Raises ``GigaError``.
        """
        return self._call(call, deadline, idempotent=False)

    # -- the guard around every call -------------------------------------------

    def _call(self, fn, deadline, *, idempotent):
        attempt = 0
        while True:
            self._admit()
            try:
                result = fn(deadline=deadline)
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else 30
                self.store.set(self._ns + "cooldown", self.clock() + wait, ttl=wait)
                raise
            except GigaError as exc:
                if not exc.transient:
                    self._record_success()  # it answered: the service is up
                    raise
                retry = (exc.never_sent if not idempotent else True) and attempt < (
                    self.get_retries if idempotent else 1)
                pause = min(2.0, 0.2 * (2 ** attempt)) * (0.5 + random.random() / 2)
                if not retry or self.clock() + pause >= deadline - 0.1:
                    # one failed call counts once towards the breaker, retries included
                    self._record_failure()
                    raise
                log.info("retrying after %r in %.2fs", exc, pause)
                time.sleep(pause)
                attempt += 1
                continue
            self._record_success()
            return result

    def _admit(self):
        """Refuse fast while cooling down, while the breaker is open, or over budget."""
        now = self.clock()
        until = self.store.get(self._ns + "cooldown")
        if until is not None and until > now:
            raise RateLimited("The billing service asked the dashboard to slow down.",
                              code="RATE_LIMITED", retry_after=int(until - now + 0.999),
                              never_sent=True)
        opened = self.store.get(self._ns + "breaker_open")
        if opened is not None:
            if now < opened + self.breaker_cooldown:
                raise Unavailable("The billing service failed repeatedly; the dashboard is "
                                  "giving it a moment before calling again.",
                                  retry_after=int(opened + self.breaker_cooldown - now + 0.999),
                                  never_sent=True)
            # half-open: let this one call through; a failure re-opens at once
            self.store.set(self._ns + "breaker_open", now, ttl=self.breaker_cooldown * 4)
            self.store.set(self._ns + "failures", self.breaker_threshold - 1)
        taken, wait = self.store.take(self._ns + "budget", self.budget_per_minute, 60)
        if not taken:
            raise Unavailable("The dashboard has used its share of the billing service's "
                              "request limit for this minute.", retry_after=int(wait + 0.999),
                              never_sent=True)

    def _record_failure(self):
        failures = (self.store.get(self._ns + "failures") or 0) + 1
        self.store.set(self._ns + "failures", failures, ttl=300)
        if failures >= self.breaker_threshold:
            self.store.set(self._ns + "breaker_open", self.clock(),
                           ttl=self.breaker_cooldown * 4)

    def _record_success(self):
        self.store.delete(self._ns + "failures")
        self.store.delete(self._ns + "breaker_open")
