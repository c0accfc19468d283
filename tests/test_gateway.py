"""The gateway: cache, single-flight, budget, cool-down, breaker, stale fallback, retries.

Each behaviour runs on both stores: in-process, and a real Redis on loopback.
"""
import threading
import time
from decimal import Decimal

import pytest

from webapp.clock import FrozenClock
from webapp.gateway import (BillingGateway, BreakerOpen, BudgetSpent, CoolingDown,
                            MemoryStore)
from webapp.gateway.redis_store import RedisStore
from webapp.giga import AuthenticationError, GigaClient, RateLimited, ServerError, Timeout

from .support.faultserver import Hang, error, healthy


@pytest.fixture(params=["memory", "redis"])
def make_gateway(request, fault_server):
    """``make_gateway(**options)``: a gateway on the fault server, over either store."""
    clock = FrozenClock()
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")

        def store():
            return RedisStore(redis_server.url, clock=clock)
    else:
        shared = MemoryStore(clock)

        def store():
            return shared

    def build(server=fault_server, **kw):
        client = GigaClient(server.url, "k", connect_timeout=1, total_timeout=3, clock=clock)
        options = dict(billing_ttl=30, plans_ttl=3600, stale_max_age=600, budget_per_minute=30,
                       reserved_for_actions=0, get_retries=0, breaker_threshold=100,
                       breaker_cooldown=30)
        options.update(kw)
        return BillingGateway(client, store(), clock=clock, **options)
    build.clock = clock
    return build


def _wait_out(clock, seconds):
    """Let ``seconds`` pass for both stores: Redis keeps lifetimes by its own clock."""
    time.sleep(seconds)
    clock.advance(seconds)


def soon(gw, seconds=3):
    return gw.clock.monotonic() + seconds


def test_reads_are_reused_within_the_ttl(make_gateway, fault_server):
    gw = make_gateway()
    a = gw.billing(soon(gw))
    b = gw.billing(soon(gw))
    assert a == b and fault_server.count("/api/billing") == 1
    assert a.value.total_balance == Decimal("124.5")


def test_ttl_zero_reads_every_time(make_gateway, fault_server):
    gw = make_gateway(billing_ttl=0)
    gw.billing(soon(gw))
    gw.billing(soon(gw))
    assert fault_server.count("/api/billing") == 2


def test_fresh_read_and_forget(make_gateway, fault_server):
    gw = make_gateway()
    gw.billing(soon(gw))
    gw.billing(soon(gw), fresh=True)
    gw.forget_billing()
    gw.billing(soon(gw))
    assert fault_server.count("/api/billing") == 3


def _slow(seconds):
    def handler(method, path, body):
        time.sleep(seconds)
        return healthy(method, path, body)
    return handler


def _together(n, fn):
    results, errors = [], []

    def run():
        try:
            results.append(fn())
        except Exception as exc:  # collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_single_flight_coalesces_concurrent_reads(make_gateway, fault_server):
    fault_server.handler = _slow(0.5)
    gw = make_gateway(billing_ttl=0)
    results, errors = _together(12, lambda: gw.billing(soon(gw)))
    assert not errors and len(results) == 12 and fault_server.count("/api/billing") == 1


def test_budget_caps_upstream_calls(make_gateway, fault_server):
    gw = make_gateway(billing_ttl=0, budget_per_minute=3)
    for _ in range(3):
        gw.billing(soon(gw))
    gw.forget_billing()  # no stale figures to fall back on
    started = time.monotonic()
    with pytest.raises(BudgetSpent) as info:
        gw.billing(soon(gw))
    assert time.monotonic() - started < 0.2
    assert info.value.retry_after >= 1 and info.value.never_sent and fault_server.count() == 3


def test_reads_cannot_spend_the_share_kept_for_actions(make_gateway, fault_server):
    """A crowd of page views leaves room for a top-up and a plan change."""
    gw = make_gateway(billing_ttl=0, budget_per_minute=6, reserved_for_actions=2)
    for _ in range(4):
        gw.billing(soon(gw))
    gw.forget_billing()
    with pytest.raises(BudgetSpent):
        gw.billing(soon(gw))
    assert gw.top_up(Decimal("50"), soon(gw)).checkout_url.startswith("https://")
    assert gw.change_plan("free", soon(gw)).checkout_url.startswith("https://")
    with pytest.raises(BudgetSpent):
        gw.top_up(Decimal("50"), soon(gw))
    assert fault_server.count() == 6


def test_429_starts_a_shared_cool_down_nobody_sleeps_through(make_gateway, fault_server):
    fault_server.handler = lambda *a: error(429, "RATE_LIMITED", headers={"Retry-After": "20"})
    gw = make_gateway(billing_ttl=0)
    with pytest.raises(RateLimited):
        gw.billing(soon(gw))
    started = time.monotonic()
    for _ in range(5):
        with pytest.raises(CoolingDown) as info:
            gw.plans(soon(gw))
    assert time.monotonic() - started < 0.2
    assert 19 <= info.value.retry_after <= 20 and fault_server.count() == 1


def test_breaker_opens_after_repeated_failures_and_answers_fast(make_gateway, fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = make_gateway(billing_ttl=0, breaker_threshold=3, breaker_cooldown=60)
    for _ in range(3):
        with pytest.raises(ServerError):
            gw.billing(soon(gw))
    started = time.monotonic()
    with pytest.raises(BreakerOpen):
        gw.billing(soon(gw))
    assert time.monotonic() - started < 0.1 and fault_server.count() == 3


def test_breaker_half_opens_after_cool_down(make_gateway, fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = make_gateway(billing_ttl=0, breaker_threshold=2, breaker_cooldown=1)
    for _ in range(2):
        with pytest.raises(ServerError):
            gw.billing(soon(gw))
    with pytest.raises(BreakerOpen):
        gw.billing(soon(gw))
    _wait_out(make_gateway.clock, 1.1)
    fault_server.handler = healthy
    assert gw.billing(soon(gw)).value.plan == "starter-pro"
    assert gw.billing(soon(gw)).value.plan == "starter-pro"


def test_half_open_lets_exactly_one_call_through(make_gateway, fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = make_gateway(billing_ttl=0, breaker_threshold=1, breaker_cooldown=1)
    with pytest.raises(ServerError):
        gw.billing(soon(gw))
    _wait_out(make_gateway.clock, 1.1)
    fault_server.handler = _slow(0.5)
    before = fault_server.count()
    # actions are never coalesced, so each of these would be its own call
    results, errors = _together(6, lambda: gw.top_up(Decimal(5), soon(gw)))
    assert fault_server.count() - before == 1 and len(results) == 1
    assert len(errors) == 5 and all(isinstance(e, BreakerOpen) for e in errors)


def test_transient_failure_serves_stale_figures_for_a_bounded_time(make_gateway, fault_server):
    gw = make_gateway(billing_ttl=0, stale_max_age=600)
    good = gw.billing(soon(gw))
    fault_server.handler = lambda *a: error(503, "INTERNAL_ERROR")
    stale = gw.billing(soon(gw))
    assert stale.stale and stale.value == good.value and isinstance(stale.error, ServerError)
    make_gateway.clock.advance(601)  # older than stale_max_age: no more stale figures
    with pytest.raises(ServerError):
        gw.billing(soon(gw))


def test_auth_failure_never_serves_stale(make_gateway, fault_server):
    gw = make_gateway(billing_ttl=0)
    gw.billing(soon(gw))
    fault_server.handler = lambda *a: error(401, "INVALID_API_KEY")
    with pytest.raises(AuthenticationError):
        gw.billing(soon(gw))


def test_gets_are_retried_with_backoff_within_the_deadline(make_gateway, fault_server):
    answers = iter([error(500, "INTERNAL_ERROR"), error(502, "INTERNAL_ERROR")])
    fault_server.handler = lambda m, p, b: next(answers, None) or healthy(m, p, b)
    gw = make_gateway(billing_ttl=0, get_retries=2)
    assert gw.billing(soon(gw, 5)).value.plan == "starter-pro"
    assert fault_server.count("/api/billing") == 3


def test_retries_stop_at_the_deadline(make_gateway, fault_server):
    fault_server.handler = lambda *a: Hang(5)
    gw = make_gateway(billing_ttl=0, get_retries=5)
    started = time.monotonic()
    with pytest.raises(Timeout):
        gw.billing(soon(gw, 1.5))
    assert time.monotonic() - started < 2.5


def test_actions_are_not_retried_on_server_error(make_gateway, fault_server):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    gw = make_gateway(get_retries=3)
    with pytest.raises(ServerError):
        gw.top_up(Decimal(5), soon(gw, 5))
    assert fault_server.count() == 1


def test_a_successful_action_makes_the_next_read_fresh(make_gateway, fault_server):
    gw = make_gateway()
    gw.billing(soon(gw))
    gw.top_up(Decimal(5), soon(gw))
    gw.billing(soon(gw))
    assert [r[1] for r in fault_server.requests] == [
        "/api/billing", "/api/billing/recharge", "/api/billing"]


def test_budget_holds_under_many_concurrent_viewers(make_gateway, fault_server):
    """50 viewers hammering for a while never push past the budget."""
    gw = make_gateway(billing_ttl=0, budget_per_minute=30)
    stop = time.monotonic() + 1.5

    def viewer():
        while time.monotonic() < stop:
            try:
                gw.billing(soon(gw))
            except Exception:
                pass
    threads = [threading.Thread(target=viewer) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fault_server.count() <= 30
