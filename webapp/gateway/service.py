"""Every upstream call the dashboard makes goes through here.

The whole team shares one API key with a limit of 60 requests a minute,
so reads are cached and coalesced (single-flight, across processes when
the store is shared), all calls spend from the dashboard's own budget --
part of which reads may never use, so a top-up is not starved by page
views -- a 429 starts a cool-down every process respects, repeated
failures open a circuit breaker, and a read that fails for a transient
reason may fall back to the last good figures for a bounded time. Writes
(POSTs) are never retried unless the request provably never left.
"""
from __future__ import annotations

import logging
import math
import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from decimal import Decimal
from functools import partial

from ..clock import Clock
from ..giga import (AuthenticationError, Checkout, ConnectionFailed, GigaClient, GigaError,
                    PermissionDenied, RateLimited, Timeout)
from .codec import Reading, Undecodable, dumps, loads
from .errors import BreakerOpen, BudgetSpent, CoolingDown, Declined

log = logging.getLogger(__name__)

#: how often a process waiting on another's upstream read looks for its result
WAIT_POLL = 0.05
#: upstream call outcomes counted for /metrics
OUTCOMES = ("ok", "client_error", "server_error", "rate_limited", "unreachable", "declined")
STATS_TTL = 10 * 365 * 86400


def _outcome(exc) -> str:
    if isinstance(exc, Declined):
        return "declined"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, (Timeout, ConnectionFailed)):
        return "unreachable"
    if exc.status is not None and 400 <= exc.status < 500:
        return "client_error"
    return "server_error"


#: the cool-down's value when the 429 that started it gave no request ID
NO_REQUEST_ID = "-"


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


class BillingGateway:
    """Cached, coalesced, budgeted and guarded access to one account's billing API."""

    def __init__(self, client: GigaClient, store, *, clock: Clock | None = None,
                 billing_ttl=30, plans_ttl=3600, stale_max_age=600, budget_per_minute=30,
                 reserved_for_actions=5, get_retries=2, breaker_threshold=5,
                 breaker_cooldown=30, on_billing_read=None):
        self.client = client
        self.store = store
        self.clock = clock or Clock()
        self.billing_ttl = billing_ttl
        self.plans_ttl = plans_ttl
        self.stale_max_age = stale_max_age
        self.budget_per_minute = budget_per_minute
        self.reserved_for_actions = min(reserved_for_actions, budget_per_minute - 1)
        self.get_retries = get_retries
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown = breaker_cooldown
        #: told of every balance this gateway reads upstream (the history keeps them)
        self.on_billing_read = on_billing_read
        # the key's fingerprint, never the key, names its shared state
        self._ns = f"giga:{client.key_fingerprint}:"
        self._inflight: dict[str, Future] = {}
        self._inflight_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="giga-read")

    # -- named operations --------------------------------------------------------

    def balance_and_plans(self, deadline: float, *, fresh_billing=False):
        """Billing and plans, read side by side rather than one after the other.

        Returns two results, each a ``Reading`` or the fault (``GigaError`` or
        ``Declined``) that stopped it.
        """
        billing_since = self._since(0 if fresh_billing else self.billing_ttl)
        plans_since = self._since(self.plans_ttl)
        billing, plans = self._cached("billing", "plans")
        if billing is not None and billing.fetched_at > billing_since \
                and plans is not None and plans.fetched_at > plans_since:
            self._count("cache:hit")
            return billing, plans  # the warm path: no thread hand-off at all
        plans_future = self._pool.submit(self._settle, self.plans, deadline)
        billing = self._settle(self.billing, deadline, fresh=fresh_billing)
        try:
            plans = plans_future.result(
                timeout=max(0.0, deadline - self.clock.monotonic()) + 0.5)
        except FutureTimeout:
            plans = Timeout("The billing service did not answer in time.")
        return billing, plans

    def billing(self, deadline: float, *, fresh=False) -> Reading:
        """The account's billing now, from cache when young enough.

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._read("billing", self.client.get_billing,
                          0 if fresh else self.billing_ttl, deadline)

    def plans(self, deadline: float, *, fresh=False) -> Reading:
        """The plans on offer (cached much longer: they rarely change).

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._read("plans", self.client.list_plans,
                          0 if fresh else self.plans_ttl, deadline)

    def top_up(self, amount: Decimal, deadline: float) -> Checkout:
        """Start a prepaid top-up checkout; sent once, again only if it never left.

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._act(partial(self.client.recharge, amount), deadline)

    def change_plan(self, plan_id: str, deadline: float) -> Checkout:
        """Start a plan-change checkout; sent once, again only if it never left.

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._act(partial(self.client.subscribe, plan_id), deadline)

    def known_billing(self) -> Reading | None:
        """The balance last read, if it is still kept (however old); never calls upstream."""
        reading, = self._cached("billing")
        return reading

    def known_plans(self):
        """The plans last read, if any are cached; never calls upstream."""
        reading, = self._cached("plans")
        return None if reading is None else reading.value

    def plan_names(self) -> dict[str, str]:
        """Plan id to name, from the plans last read (never calls upstream); empty if none."""
        return {plan.id: plan.name for plan in self.known_plans() or ()}

    def store_reachable(self) -> bool:
        """Whether the store every process shares answers now (always, in one process)."""
        return self.store.ping()

    def stats(self) -> dict:
        """The deployment's figures for /metrics, read from the shared store."""
        ns = self._ns
        names = [f"calls:{o}" for o in OUTCOMES] + ["cache:hit", "cache:miss"]
        values = self.store.get_many(*(ns + "stats:" + n for n in names))
        counts = {n: int(v or 0) for n, v in zip(names, values)}
        used = self.store.count(ns + "budget", 60)
        if self.store.remaining(ns + "breaker_open") is not None:
            breaker = "open"
        elif int(self.store.get(ns + "failures") or 0) >= self.breaker_threshold:
            breaker = "half-open"
        else:
            breaker = "closed"
        return {"calls": {o: counts[f"calls:{o}"] for o in OUTCOMES},
                "cache": {"hit": counts["cache:hit"], "miss": counts["cache:miss"]},
                "budget_left": max(0, self.budget_per_minute - used), "breaker": breaker}

    def _count(self, name: str) -> None:
        self.store.incr(self._ns + "stats:" + name, STATS_TTL)

    def forget_billing(self) -> None:
        """Drop the cached balance so the next read is fresh."""
        self.store.delete(self._ns + "billing")

    # -- reads ------------------------------------------------------------------

    def _since(self, ttl: float):
        """A reading fetched after this moment is young enough for ``ttl``."""
        return self.clock.now() - timedelta(seconds=ttl)

    def _cached(self, *names: str) -> list[Reading | None]:
        texts = self.store.get_many(*(self._ns + n for n in names))
        readings = []
        for name, text in zip(names, texts):
            try:
                readings.append(loads(name, text))
            except Undecodable as exc:  # written by someone else: not trusted, not fatal
                log.warning("ignoring a cached value: %s", exc)
                readings.append(None)
        return readings

    @staticmethod
    def _settle(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except GigaError as exc:
            return exc

    def _read(self, name, loader, ttl, deadline) -> Reading:
        since = self._since(ttl)
        cached, = self._cached(name)
        if cached is not None and cached.fetched_at > since:
            self._count("cache:hit")
            return cached
        self._count("cache:miss")
        try:
            return self._single_flight(name, loader, since, deadline)
        except (AuthenticationError, PermissionDenied):
            raise  # never paper over a key problem with old figures
        except GigaError as exc:
            if cached is not None and (exc.transient or isinstance(exc, RateLimited)):
                age = (self.clock.now() - cached.fetched_at).total_seconds()
                if age <= self.stale_max_age:
                    # the budget or a cool-down saying no is routine under load
                    level = logging.DEBUG if isinstance(exc, (Declined, RateLimited)) \
                        else logging.WARNING
                    log.log(level, "serving %s from %ds ago: %r", name, age, exc)
                    return Reading(cached.value, cached.fetched_at, stale=True, error=exc)
            raise

    def _single_flight(self, name, loader, since, deadline) -> Reading:
        """Run the read once for all concurrent callers of ``name`` in this process."""
        with self._inflight_lock:
            future = self._inflight.get(name)
            leader = future is None
            if leader:
                future = self._inflight[name] = Future()
        if not leader:
            try:
                return future.result(timeout=max(0.0, deadline - self.clock.monotonic()))
            except FutureTimeout:
                raise Timeout("The billing service did not answer in time.") from None
        try:
            reading = self._shared_read(name, loader, since, deadline)
            future.set_result(reading)
            return reading
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._inflight_lock:
                self._inflight.pop(name, None)

    def _shared_read(self, name, loader, since, deadline) -> Reading:
        """Read ``name`` upstream unless another process is already doing it, in
        which case wait (within ``deadline``) for the reading it stores."""
        lock = self._ns + name + ":reading"
        while True:
            hold = max(1.0, deadline - self.clock.monotonic() + 1.0)
            if self.store.claim(lock, hold):
                try:
                    cached, = self._cached(name)  # stored while we were queueing?
                    if cached is not None and cached.fetched_at > since:
                        return cached
                    value = self._call(loader, deadline, action=False)
                    reading = Reading(value, self.clock.now())
                    # kept past its TTL on purpose: it is the stale fallback
                    self.store.set(self._ns + name, dumps(name, reading),
                                   ttl=max(self.stale_max_age, 1) + 60)
                finally:
                    self.store.delete(lock)
                # told after the lock is gone: other processes waiting for this
                # reading have it already, and need not wait for what is done with it
                if name == "billing" and self.on_billing_read is not None:
                    self.on_billing_read(reading)
                return reading
            if self.clock.monotonic() + WAIT_POLL >= deadline:
                raise Timeout("The billing service did not answer in time.")
            self.clock.sleep(WAIT_POLL)
            cached, = self._cached(name)
            if cached is not None and cached.fetched_at > since:
                return cached

    # -- writes -----------------------------------------------------------------

    def _act(self, call, deadline) -> Checkout:
        checkout = self._call(call, deadline, action=True)
        self.forget_billing()  # the balance is about to change
        return checkout

    # -- the guard around every call -------------------------------------------

    def _call(self, fn, deadline, *, action):
        """``fn(deadline=...)`` with the budget, cool-down and breaker applied to every
        attempt: a read (``action`` false) is tried again on a transient fault within
        the deadline, an action only when the request provably never left.

        Raises ``GigaError`` (``Declined`` among them).
        """
        attempt = 0
        retries = 1 if action else self.get_retries
        while True:
            try:
                self._admit(action)
            except Declined:
                self._count("calls:declined")
                raise
            try:
                result = fn(deadline=deadline)
            except RateLimited as exc:
                self._count("calls:rate_limited")
                wait = exc.retry_after if exc.retry_after is not None else 30
                # the value is the 429's request ID, quoted by every page during the pause
                self.store.set(self._ns + "cooldown", exc.request_id or NO_REQUEST_ID,
                               ttl=max(1, wait))
                raise
            except GigaError as exc:
                self._count("calls:" + _outcome(exc))
                if not exc.transient:
                    self._record_success()  # it answered: the service is up
                    raise
                retry = (exc.never_sent or not action) and attempt < retries
                pause = min(2.0, 0.2 * (2 ** attempt)) * (0.5 + random.random() / 2)
                if not retry or self.clock.monotonic() + pause >= deadline - 0.1:
                    # one failed call counts once towards the breaker, retries included
                    self._record_failure()
                    raise
                log.info("retrying after %r in %.2fs", exc, pause)
                self.clock.sleep(pause)
                attempt += 1
                continue
            self._count("calls:ok")
            self._record_success()
            return result

    def _admit(self, action: bool):
        """Refuse fast while cooling down, while the breaker is open, or over budget.

        Raises ``Declined``.
        """
        ns = self._ns
        left = self.store.remaining(ns + "cooldown")
        if left is not None:
            started_by = self.store.get(ns + "cooldown")
            raise CoolingDown("The billing service asked the dashboard to slow down.",
                              retry_after=_seconds(left),
                              request_id=None if started_by in (None, NO_REQUEST_ID)
                              else started_by[:100])
        left = self.store.remaining(ns + "breaker_open")
        if left is not None:
            raise BreakerOpen("The billing service failed repeatedly; the dashboard is giving "
                              "it a moment before calling again.", retry_after=_seconds(left))
        probing = int(self.store.get(ns + "failures") or 0) >= self.breaker_threshold
        # half-open: exactly one caller, in any process, tries the service again
        if probing and not self.store.claim(ns + "breaker_probe", self.breaker_cooldown):
            raise BreakerOpen("The billing service failed repeatedly; the dashboard is trying "
                              "it again now.", retry_after=_seconds(self.breaker_cooldown / 10))
        limit = self.budget_per_minute - (0 if action else self.reserved_for_actions)
        taken, wait = self.store.take(ns + "budget", limit, 60)
        if not taken:
            if probing:
                self.store.delete(ns + "breaker_probe")
            raise BudgetSpent("The dashboard has used its share of the billing service's "
                              "request limit for this minute.", retry_after=_seconds(wait))

    def _record_failure(self):
        ns = self._ns
        failures = self.store.incr(ns + "failures", max(300, self.breaker_cooldown * 4))
        if failures >= self.breaker_threshold:
            self.store.set(ns + "breaker_open", "1", ttl=self.breaker_cooldown)
            self.store.delete(ns + "breaker_probe")

    def _record_success(self):
        self.store.delete(self._ns + "failures", self._ns + "breaker_open",
                          self._ns + "breaker_probe")
