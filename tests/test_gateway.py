"""The gateway: cache, single-flight, budget, cool-down, breaker, stale fallback, retries."""
import threading
import time
from datetime import timedelta

import pytest

from webapp.gateway import BillingGateway
from webapp.giga import (AuthenticationError, GigaClient, RateLimited, ServerError, Timeout,
                         Unavailable)
from webapp.store import MemoryStore

from .support.faultserver import Hang, error, healthy


def _gateway(server, **kw):
    client = GigaClient(server.url, "k", connect_timeout=1, total_timeout=3)
    options = dict(billing_ttl=30, plans_ttl=3600, stale_max_age=600, budget_per_minute=30,
                   get_retries=0, breaker_threshold=100, breaker_cooldown=30)
    options.update(kw)
    return BillingGateway(client, MemoryStore(), **options)


def soon(seconds=3):
    return time.monotonic() + seconds


def test_reads_are_reused_within_the_ttl(fault_server):
    gw = _gateway(fault_server)
    a = gw.billing(soon())
    b = gw.billing(soon())
    assert a is b and fault_server.count("/api/billing") == 1


def test_ttl_zero_reads_every_time(fault_server):
    gw = _gateway(fault_server, billing_ttl=0)
    gw.billing(soon())
    gw.billing(soon())
    assert fault_server.count("/api/billing") == 2


def test_fresh_read_and_forget(fault_server):
    gw = _gateway(fault_server)
    gw.billing(soon())
    gw.billing(soon(), fresh=True)
    gw.forget_billing()
    gw.billing(soon())
    assert fault_server.count("/api/billing") == 3


def test_single_flight_coalesces_concurrent_reads(fault_server):
    def slow(method, path, body):
        time.sleep(0.5)
        return healthy(method, path, body)
    fault_server.handler = slow
    gw = _gateway(fault_server, billing_ttl=0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(gw.billing(soon())))
               for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and fault_server.count("/api/billing") == 1


def test_budget_caps_upstream_calls(fault_server):
    gw = _gateway(fault_server, billing_ttl=0, budget_per_minute=3)
    for _ in range(3):
        gw.billing(soon())
    gw.store.delete(gw._ns + "billing")  # no stale figures to fall back on
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        gw.billing(soon())
    assert time.monotonic() - started < 0.2
    assert info.value.retry_after >= 1 and fault_server.count() == 3


def test_429_starts_a_shared_cool_down_nobody_sleeps_through(fault_server):
    fault_server.handler = lambda *a: error(429, "RATE_LIMITED", headers={"Retry-After": "20"})
    gw = _gateway(fault_server, billing_ttl=0)
    with pytest.raises(RateLimited):
        gw.billing(soon())
    started = time.monotonic()
    for _ in range(5):
        with pytest.raises(RateLimited) as info:
            gw.plans(soon())
    assert time.monotonic() - started < 0.2
    assert 19 <= info.value.retry_after <= 20 and fault_server.count() == 1


def test_breaker_opens_after_repeated_failures_and_answers_fast(fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = _gateway(fault_server, billing_ttl=0, breaker_threshold=3, breaker_cooldown=60)
    for _ in range(3):
        with pytest.raises(ServerError):
            gw.billing(soon())
    started = time.monotonic()
    with pytest.raises(Unavailable):
        gw.billing(soon())
    assert time.monotonic() - started < 0.1 and fault_server.count() == 3


def test_breaker_half_opens_after_cool_down(fault_server):
    clock = [1000.0]
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = _gateway(fault_server, billing_ttl=0, breaker_threshold=2, breaker_cooldown=30)
    gw.clock = lambda: clock[0]
    for _ in range(2):
        with pytest.raises(ServerError):
            gw.billing(soon())
    with pytest.raises(Unavailable):
        gw.billing(soon())
    clock[0] += 31
    fault_server.handler = healthy
    assert gw.billing(soon()).value.plan == "starter-pro"
    assert gw.billing(soon()).value.plan == "starter-pro"


def test_transient_failure_serves_stale_figures_for_a_bounded_time(fault_server):
    gw = _gateway(fault_server, billing_ttl=0, stale_max_age=600)
    good = gw.billing(soon())
    fault_server.handler = lambda *a: error(503, "INTERNAL_ERROR")
    stale = gw.billing(soon())
    assert stale.stale and stale.value == good.value and isinstance(stale.error, ServerError)
    # older than stale_max_age: no more stale figures
    key = gw._ns + "billing"
    old = gw.store.get(key)
    gw.store.set(key, type(old)(old.value, old.fetched_at - timedelta(seconds=601)))
    with pytest.raises(ServerError):
        gw.billing(soon())


def test_auth_failure_never_serves_stale(fault_server):
    gw = _gateway(fault_server, billing_ttl=0)
    gw.billing(soon())
    fault_server.handler = lambda *a: error(401, "INVALID_API_KEY")
    with pytest.raises(AuthenticationError):
        gw.billing(soon())


def test_gets_are_retried_with_backoff_within_the_deadline(fault_server):
    answers = iter([error(500, "INTERNAL_ERROR"), error(502, "INTERNAL_ERROR")])
    fault_server.handler = lambda m, p, b: next(answers, None) or healthy(m, p, b)
    gw = _gateway(fault_server, billing_ttl=0, get_retries=2)
    assert gw.billing(soon(5)).value.plan == "starter-pro"
    assert fault_server.count("/api/billing") == 3


def test_retries_stop_at_the_deadline(fault_server):
    fault_server.handler = lambda *a: Hang(5)
    gw = _gateway(fault_server, billing_ttl=0, get_retries=5)
    started = time.monotonic()
    with pytest.raises(Timeout):
        gw.billing(soon(1.5))
    assert time.monotonic() - started < 2.5


def test_posts_are_not_retried_on_server_error(fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = _gateway(fault_server, get_retries=3)
    from decimal import Decimal
    with pytest.raises(ServerError):
        gw.post(lambda deadline: gw.client.recharge(Decimal(5), deadline=deadline), soon(5))
    assert fault_server.count() == 1


def test_budget_holds_under_many_concurrent_viewers(fault_server):
    """50 viewers hammering for a while never push past the budget."""
    gw = _gateway(fault_server, billing_ttl=0, budget_per_minute=30)
    stop = time.monotonic() + 1.5

    def viewer():
        while time.monotonic() < stop:
            try:
                gw.billing(soon())
            except Exception:
                pass
    threads = [threading.Thread(target=viewer) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fault_server.count() <= 30
