"""The real client against the real sandbox (and the fault server) over loopback HTTP."""
import json
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from webapp.giga import (AuthenticationError, BadResponse, ConnectionFailed, GigaClient,
                         InsufficientCredits, InvalidRequest, NotFound, PermissionDenied,
                         RateLimited, ServerError, Timeout)
from webapp.giga.client import canonical_amount, parse_retry_after
from webapp.sandbox.server import RateLimiter

from .support.net import closed_port
from .support.faultserver import PLANS, Drip, Hang, Reset, Respond, error, ok


@pytest.fixture
def giga(sandbox):
    return GigaClient(sandbox.url, sandbox.api_key, total_timeout=5)


def test_billing_is_typed_with_decimal_money(giga):
    billing = giga.get_billing()
    assert billing.plan == "starter-pro"
    assert billing.plan_credits_remaining == Decimal("74.50")
    assert isinstance(billing.prepaid_balance, Decimal)
    assert billing.total_balance == billing.plan_credits_remaining + billing.prepaid_balance
    assert billing.period_start.tzinfo is not None and billing.period_end > billing.period_start


def test_plans_keep_words_for_custom_and_unlimited(giga):
    plans = {p.id: p for p in giga.list_plans()}
    assert plans["starter-pro"].price == Decimal(29)
    assert plans["max"].price == "custom" and plans["max"].is_custom_priced
    assert plans["max"].concurrent_agents == "unlimited"
    assert not plans["free"].is_custom_priced


def test_recharge_returns_checkout_and_sends_canonical_amount(giga, sandbox):
    checkout = giga.recharge(Decimal("12.50"))
    assert checkout.checkout_url.startswith(sandbox.url + "/checkout/cs_test_")
    assert checkout.request_id


def test_subscribe_returns_checkout(giga, sandbox):
    assert giga.subscribe("pro").checkout_url.startswith(sandbox.url + "/checkout/")


@pytest.mark.parametrize("amount,text", [
    (Decimal("50"), "50"), (Decimal("50.00"), "50"), (Decimal("12.50"), "12.5"),
    (Decimal("0.01"), "0.01"), (Decimal("1E+3"), "1000"), (Decimal("10000.00"), "10000")])
def test_canonical_amount_has_no_exponent(amount, text):
    assert canonical_amount(amount) == text


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-1")])
def test_canonical_amount_refuses_non_payable(bad):
    with pytest.raises(ValueError):
        canonical_amount(bad)


def test_missing_key_is_unauthorized(sandbox):
    with pytest.raises(AuthenticationError) as info:
        GigaClient(sandbox.url, None).get_billing()
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED"
    assert info.value.request_id


def test_wrong_key_is_invalid_api_key(sandbox):
    with pytest.raises(AuthenticationError) as info:
        GigaClient(sandbox.url, "giga_sk_revoked").get_billing()
    assert info.value.code == "INVALID_API_KEY" and info.value.request_id


def test_rate_limit_gives_retry_after(giga, sandbox):
    sandbox.limiter = RateLimiter(2)
    giga.get_billing()
    giga.get_billing()
    with pytest.raises(RateLimited) as info:
        giga.get_billing()
    assert info.value.code == "RATE_LIMITED" and 1 <= info.value.retry_after <= 60


def test_invalid_field_on_custom_plan(giga):
    with pytest.raises(InvalidRequest) as info:
        giga.subscribe("max")
    assert info.value.code == "INVALID_FIELD" and info.value.hint


def test_unknown_plan_is_not_found(giga):
    with pytest.raises(NotFound) as info:
        giga.subscribe("no-such-plan")
    assert info.value.code == "RESOURCE_NOT_FOUND"


def test_outage_is_server_error(giga, sandbox):
    sandbox.outage = True
    with pytest.raises(ServerError) as info:
        giga.get_billing()
    assert info.value.status == 500 and info.value.code == "INTERNAL_ERROR"


# -- every error code of the contract, from a server that sends it -----------------

@pytest.mark.parametrize("status,code,cls", [
    (400, "INVALID_REQUEST", InvalidRequest), (400, "INVALID_FIELD", InvalidRequest),
    (401, "UNAUTHORIZED", AuthenticationError), (401, "INVALID_API_KEY", AuthenticationError),
    (402, "INSUFFICIENT_CREDITS", InsufficientCredits), (403, "FORBIDDEN", PermissionDenied),
    (403, "PLAN_LIMIT_EXCEEDED", PermissionDenied), (404, "RESOURCE_NOT_FOUND", NotFound),
    (429, "RATE_LIMITED", RateLimited), (500, "INTERNAL_ERROR", ServerError)])
def test_every_error_code_maps_to_its_class(fault_server, status, code, cls):
    fault_server.handler = lambda *a: error(status, code, "said no", hint="try x",
                                            request_id="req-123",
                                            headers={"Retry-After": "7"})
    with pytest.raises(cls) as info:
        GigaClient(fault_server.url, "k").get_billing()
    e = info.value
    assert (e.status, e.code, e.message, e.hint, e.request_id) == (status, code, "said no",
                                                                   "try x", "req-123")
    assert e.retry_after == 7


@pytest.fixture
def fault_giga(fault_server):
    return GigaClient(fault_server.url, "k", connect_timeout=1, total_timeout=2)


def test_html_error_page_is_server_error_without_traceback(fault_server, fault_giga):
    fault_server.handler = lambda *a: Respond(502, "<html><h1>Bad gateway</h1></html>",
                                              content_type="text/html")
    with pytest.raises(ServerError) as info:
        fault_giga.get_billing()
    assert info.value.status == 502 and "502" in info.value.message


@pytest.mark.parametrize("body", [b"not json", b"{\"success\": true}", b"[1,2]",
                                  b'{"success": true, "data": {"billing": {"plan": "x"}}}',
                                  b"{\"success\": true, \"data\": {\"billing\": NaN}}"])
def test_non_json_and_missing_fields_are_bad_response(fault_server, fault_giga, body):
    fault_server.handler = lambda *a: Respond(200, body)
    with pytest.raises(BadResponse):
        fault_giga.get_billing()


@pytest.mark.parametrize("field,value", [
    ("planCreditsRemaining", "74.50"), ("prepaidBalance", None), ("totalBalance", True),
    ("currentPeriodEnd", 12345), ("currentPeriodStart", "yesterday"), ("plan", 7),
    ("currentPeriodEnd", "2024-02-01T00:00:00.000Z")])
def test_mistyped_billing_fields_are_bad_response(fault_server, fault_giga, field, value):
    billing = {"plan": "starter-pro", "planCreditsRemaining": 74.5, "prepaidBalance": 50,
               "totalBalance": 124.5, "currentPeriodStart": "2024-03-01T00:00:00.000Z",
               "currentPeriodEnd": "2024-04-01T00:00:00.000Z", field: value}
    fault_server.handler = lambda *a: ok({"billing": billing})
    with pytest.raises(BadResponse):
        fault_giga.get_billing()


def test_mistyped_plan_is_bad_response(fault_server, fault_giga):
    plans = json.loads(json.dumps(PLANS))
    plans["plans"][0]["price"] = [29]
    fault_server.handler = lambda *a: ok(plans)
    with pytest.raises(BadResponse):
        fault_giga.list_plans()


def test_float_noise_stays_exact_decimal(fault_server, fault_giga):
    fault_server.handler = lambda *a: Respond(200, (
        b'{"success": true, "data": {"billing": {"plan": "p", "planCreditsRemaining": 0.1,'
        b' "prepaidBalance": 0.2, "totalBalance": 0.3, "currentPeriodStart":'
        b' "2024-03-01T00:00:00Z", "currentPeriodEnd": "2024-04-01T00:00:00+00:00"}}}'))
    billing = fault_giga.get_billing()
    assert billing.plan_credits_remaining + billing.prepaid_balance == billing.total_balance
    assert billing.period_end == datetime(2024, 4, 1, tzinfo=timezone.utc)


def test_refused_connection_is_wrapped_and_never_sent():
    port = closed_port()
    with pytest.raises(ConnectionFailed) as info:
        GigaClient(f"http://127.0.0.1:{port}", "k").get_billing()
    assert info.value.never_sent


def test_reset_is_wrapped(fault_server, fault_giga):
    fault_server.handler = lambda *a: Reset()
    with pytest.raises(ConnectionFailed) as info:
        fault_giga.recharge(Decimal(10))
    assert not info.value.never_sent  # it may have been acted on


def test_server_that_never_answers_times_out_at_the_deadline(fault_server, fault_giga):
    fault_server.handler = lambda *a: Hang(10)
    started = time.monotonic()
    with pytest.raises(Timeout):
        fault_giga.get_billing()
    assert time.monotonic() - started < 3


def test_slow_drip_cannot_hold_past_the_deadline(fault_server, fault_giga):
    fault_server.handler = lambda *a: Drip(ok({"billing": {}}), interval=0.3)
    started = time.monotonic()
    with pytest.raises(Timeout):
        fault_giga.get_billing()
    assert time.monotonic() - started < 3


def test_bearer_key_and_json_body_are_sent(fault_server, fault_giga):
    fault_giga.recharge(Decimal("25.50"))
    method, path, body, headers = fault_server.requests[-1]
    assert (method, path) == ("POST", "/api/billing/recharge")
    assert headers["authorization"] == "Bearer k"
    assert body == b'{"amount": 25.5}'


def test_client_repr_hides_the_key():
    assert "secret" not in repr(GigaClient("https://x", "giga_sk_secret"))


@pytest.mark.parametrize("value,seconds", [("7", 7), ("0", 0), (None, None), ("soon", None),
                                           ("99999", 3600)])
def test_retry_after_parsing(value, seconds):
    assert parse_retry_after(value) == seconds


def _http_threads():
    return [t for t in threading.enumerate() if t.name == "giga-http"]


@pytest.mark.parametrize("action", [Hang(30), Drip(ok({"billing": {}}), interval=0.2)],
                         ids=["hang", "drip"])
def test_timed_out_calls_leave_no_thread_behind(fault_server, action):
    """After a deadline passes the connection is closed and its thread ends."""
    fault_server.handler = lambda *a: action
    client = GigaClient(fault_server.url, "k", connect_timeout=1, total_timeout=0.3)
    for _ in range(20):
        with pytest.raises(Timeout):
            client.get_billing()
    ended_by = time.monotonic() + 3
    while _http_threads() and time.monotonic() < ended_by:
        time.sleep(0.05)
    assert _http_threads() == []
