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
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from ..clock import Clock
from ..giga import (AuthenticationError, Checkout, ConnectionFailed, GigaClient, GigaError,
                    PermissionDenied, RateLimited, Timeout)
from .codec import Reading, Undecodable, dumps, loads, milliseconds
from .errors import BreakerOpen, BudgetSpent, CoolingDown, Declined
from .store import Flight, Guard, Verdict

log = logging.getLogger(__name__)

#: how often a process waiting on another's upstream read looks for its result
WAIT_POLL = 0.05
#: upstream call outcomes counted for /metrics
OUTCOMES = ("ok", "client_error", "server_error", "rate_limited", "unreachable", "declined")


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


def _fresh(reading: Reading | None, since: datetime) -> bool:
    """Whether ``reading`` was fetched after ``since``, to the millisecond its stored
    stamp keeps (the store tells freshness by that stamp too, so both agree)."""
    return reading is not None and milliseconds(reading.fetched_at) > milliseconds(since)


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
        self._ns = ns = f"giga:{client.key_fingerprint}:"
        self._guard = Guard(cooldown=ns + "cooldown", breaker_open=ns + "breaker_open",
                            failures=ns + "failures", probe=ns + "breaker_probe",
                            budget=ns + "budget", declined=ns + "stats:calls:declined",
                            threshold=breaker_threshold, breaker_cooldown=breaker_cooldown,
                            failures_ttl=max(300, breaker_cooldown * 4))
        self._inflight: dict[str, Future] = {}
        self._inflight_lock = threading.Lock()
        # the text last decoded for each name and its reading: a warm page decodes nothing
        self._decoded: dict[str, tuple[str, Reading]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="giga-read")

    # -- named operations --------------------------------------------------------

    def balance_and_plans(self, deadline: float, *, fresh_billing=False):
        """Billing and plans, read side by side rather than one after the other.

        Returns two results, each a ``Reading`` or the fault (``GigaError`` or
        ``Declined``) that stopped it.
        """
        billing_since = self._since(0 if fresh_billing else self.billing_ttl)
        plans_since = self._since(self.plans_ttl)
        # one look for both, counted as a cache hit by the store when both are fresh
        billing, plans = self._look(("billing", "plans"), (billing_since, plans_since))
        billing_fresh, plans_fresh = _fresh(billing, billing_since), _fresh(plans, plans_since)
        if billing_fresh and plans_fresh:
            return billing, plans  # the warm path: no thread hand-off at all
        read = partial(self._result_or_fault, self._read)
        if billing_fresh or plans_fresh:
            # one to read: on this thread, the other's cache hit counted with its read
            if plans_fresh:
                return read("billing", self.client.get_billing, billing_since, deadline,
                            billing, ("cache:hit",)), plans
            return billing, read("plans", self.client.list_plans, plans_since, deadline,
                                 plans, ("cache:hit",))
        plans_future = self._pool.submit(read, "plans", self.client.list_plans, plans_since,
                                         deadline, plans)
        billing = read("billing", self.client.get_billing, billing_since, deadline, billing)
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
        return self._looked_read("billing", self.client.get_billing,
                                 0 if fresh else self.billing_ttl, deadline)

    def plans(self, deadline: float, *, fresh=False) -> Reading:
        """The plans on offer (cached much longer: they rarely change).

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._looked_read("plans", self.client.list_plans,
                                 0 if fresh else self.plans_ttl, deadline)

    def top_up(self, amount: Decimal, deadline: float) -> Checkout:
        """Start a prepaid top-up checkout; sent once, again only if it never left.

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._call(partial(self.client.recharge, amount), deadline)

    def change_plan(self, plan_id: str, deadline: float) -> Checkout:
        """Start a plan-change checkout; sent once, again only if it never left.

        Raises ``GigaError`` (``Declined`` when the gateway holds it back).
        """
        return self._call(partial(self.client.subscribe, plan_id), deadline)

    def known_billing(self) -> Reading | None:
        """The balance last read, if it is still kept (however old); never calls upstream."""
        reading, = self._look(("billing",))
        return reading

    def known_plans(self):
        """The plans last read, if any are cached; never calls upstream."""
        reading, = self._look(("plans",))
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

    def forget_billing(self) -> None:
        """Drop the cached balance so the next read is fresh."""
        self.store.delete(self._ns + "billing")

    # -- reads ------------------------------------------------------------------

    def _since(self, ttl: float) -> datetime:
        """A reading fetched after this moment is young enough for ``ttl``."""
        return self.clock.now() - timedelta(seconds=ttl)

    def _counters(self, *names: str) -> tuple[str, ...]:
        """The store's keys of the /metrics counters ``names``."""
        return tuple(self._ns + "stats:" + n for n in names)

    def _look(self, names, since=None) -> list[Reading | None]:
        """The cached readings of ``names`` (``None`` for each one absent or unreadable),
        in one look at the store; with ``since`` (a moment for each), a cache hit is
        counted when every one is younger."""
        texts = self.store.look(
            [self._ns + n for n in names],
            fresh_after=None if since is None else [milliseconds(s) for s in since],
            count=None if since is None else self._ns + "stats:cache:hit")
        return [self._decode(name, text) for name, text in zip(names, texts)]

    def _decode(self, name: str, text: str | None) -> Reading | None:
        if text is None:
            return None
        known = self._decoded.get(name)
        if known is not None and known[0] == text:
            return known[1]
        try:
            reading = loads(name, text)
        except Undecodable as exc:  # written by someone else: not trusted, not fatal
            log.warning("ignoring a cached value: %s", exc)
            return None
        self._decoded[name] = (text, reading)
        return reading

    @staticmethod
    def _result_or_fault(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except GigaError as exc:
            return exc

    def _looked_read(self, name, loader, ttl, deadline) -> Reading:
        """``name`` from the cache when younger than ``ttl``, else read (``_read``).

        Raises ``GigaError``."""
        since = self._since(ttl)
        cached, = self._look((name,), (since,))
        if _fresh(cached, since):
            return cached
        return self._read(name, loader, since, deadline, cached)

    def _read(self, name, loader, since, deadline, cached, counts=()) -> Reading:
        """Read ``name`` (older than ``since`` in the cache, where it is ``cached``)
        upstream, once for all who want it; the counters ``counts`` are added to
        with the cache miss. A transient fault falls back to ``cached`` while it is
        no older than ``stale_max_age``.

        Raises ``GigaError``."""
        try:
            return self._single_flight(name, loader, since, deadline,
                                       ("cache:miss", *counts))
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

    def _single_flight(self, name, loader, since, deadline, counts) -> Reading:
        """Run the read once for all concurrent callers of ``name`` in this process."""
        with self._inflight_lock:
            future = self._inflight.get(name)
            leader = future is None
            if leader:
                future = self._inflight[name] = Future()
        if not leader:
            self.store.settle(self._guard, counts=self._counters(*counts))
            try:
                return future.result(timeout=max(0.0, deadline - self.clock.monotonic()))
            except FutureTimeout:
                raise Timeout("The billing service did not answer in time.") from None
        try:
            reading = self._shared_read(name, loader, since, deadline, counts)
            future.set_result(reading)
            return reading
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._inflight_lock:
                self._inflight.pop(name, None)

    def _shared_read(self, name, loader, since, deadline, counts) -> Reading:
        """Read ``name`` upstream unless another process is already doing it, in
        which case wait (within ``deadline``) for the reading it stores. Each look
        for that reading takes the lock when it is free and admits the call in the
        same round trip (the counters ``counts`` are added to with the first)."""
        key = self._ns + name
        fresh_after = milliseconds(since)
        counts = self._counters(*counts)
        while True:
            flight = Flight(key, key + ":reading", fresh_after=fresh_after,
                            hold=max(1.0, deadline - self.clock.monotonic() + 1.0))
            verdict = self.store.admit(self._guard, self._read_limit, flight=flight,
                                       counts=counts)
            counts = ()
            if verdict.kind == "fresh":  # stored while we were queueing
                reading = self._decode(name, verdict.text)
                if _fresh(reading, since):
                    return reading
                fresh_after = None  # it only looked fresh: read past it
            elif verdict.kind == "busy":
                if self.clock.monotonic() + WAIT_POLL >= deadline:
                    raise Timeout("The billing service did not answer in time.")
                self.clock.sleep(WAIT_POLL)
            elif verdict.kind == "go":
                reading = self._held_read(name, loader, deadline, flight.lock)
                # told after the lock is gone: other processes waiting for this
                # reading have it already, and need not wait for what is done with it
                if name == "billing" and self.on_billing_read is not None:
                    self.on_billing_read(reading)
                return reading
            else:
                raise self._declined(verdict)

    def _held_read(self, name, loader, deadline, lock) -> Reading:
        """The upstream read of ``name`` by the holder of its ``lock``, admitted once
        already; the reading is stored, and the lock let go, as the call is settled.

        Raises ``GigaError``."""
        def keep(value):
            reading = Reading(value, self.clock.now())
            # kept past its TTL on purpose: it is the stale fallback
            return reading, {"put": (self._ns + name, dumps(name, reading),
                                     max(self.stale_max_age, 1) + 60)}
        try:
            return self._call(loader, deadline, lock=lock, keep=keep)
        except GigaError:
            raise  # the lock went with the call's last word
        except BaseException:
            self.store.delete(lock)
            raise

    @property
    def _read_limit(self) -> int:
        """The calls a minute reads may make: the budget less what is kept for actions."""
        return self.budget_per_minute - self.reserved_for_actions

    # -- the guard around every call -------------------------------------------

    def _forgetting_billing(self, checkout):
        """An action's checkout, settled with the cached balance dropped: it is about to
        change, so the next read is fresh."""
        return checkout, {"drop": (self._ns + "billing",)}

    def _call(self, fn, deadline, *, lock=None, keep=None):
        """``fn(deadline=...)`` with the budget, cool-down and breaker applied to every
        attempt. A read holds its single-flight ``lock`` (let go when the call is
        settled) and is admitted already for its first attempt; it is tried again on a
        transient fault within the deadline, an action (no ``lock``) only when the
        request provably never left. ``keep(result)`` says what to return and what else
        to settle with success (an action's: forget the balance).

        Raises ``GigaError`` (``Declined`` among them).
        """
        action = lock is None
        keep = keep or self._forgetting_billing
        attempt, counts = 0, ()
        retries = 1 if action else self.get_retries
        release = () if action else (lock,)
        while True:
            if action or attempt:
                verdict = self.store.admit(
                    self._guard, self.budget_per_minute if action else self._read_limit,
                    holding=lock, counts=counts)
                if verdict.kind != "go":
                    raise self._declined(verdict)  # the lock went with it
            try:
                result = fn(deadline=deadline)
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else 30
                # the value is the 429's request ID, quoted by every page during the pause
                self.store.settle(self._guard, counts=self._counters("calls:rate_limited"),
                                  cooldown=(exc.request_id or NO_REQUEST_ID, max(1, wait)),
                                  drop=release)
                raise
            except GigaError as exc:
                counts = self._counters("calls:" + _outcome(exc))
                retry = exc.transient and (exc.never_sent or not action) and attempt < retries
                pause = min(2.0, 0.2 * (2 ** attempt)) * (0.5 + random.random() / 2)
                if not retry or self.clock.monotonic() + pause >= deadline - 0.1:
                    # it answered (the service is up), or one failed call counts once
                    # towards the breaker, retries included
                    self.store.settle(self._guard, counts=counts, drop=release,
                                      outcome="failed" if exc.transient else "ok")
                    raise
                log.info("retrying after %r in %.2fs", exc, pause)
                self.clock.sleep(pause)  # the failure is counted with the next admission
                attempt += 1
                continue
            value, more = keep(result)
            more["drop"] = (*more.get("drop", ()), *release)
            self.store.settle(self._guard, outcome="ok", counts=self._counters("calls:ok"), **more)
            return value

    def _declined(self, verdict: Verdict) -> Declined:
        """The ``Declined`` for a refusal of ``admit``'s."""
        if verdict.kind == "cooling":
            return CoolingDown("The billing service asked the dashboard to slow down.",
                               retry_after=_seconds(verdict.wait),
                               request_id=None if verdict.text in (None, NO_REQUEST_ID)
                               else verdict.text[:100])
        if verdict.kind == "open":
            return BreakerOpen("The billing service failed repeatedly; the dashboard is "
                               "giving it a moment before calling again.",
                               retry_after=_seconds(verdict.wait))
        if verdict.kind == "probing":
            return BreakerOpen("The billing service failed repeatedly; the dashboard is "
                               "trying it again now.", retry_after=_seconds(verdict.wait))
        return BudgetSpent("The dashboard has used its share of the billing service's "
                           "request limit for this minute.", retry_after=_seconds(verdict.wait))
