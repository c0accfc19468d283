"""Fault injection against a real HTTP server on loopback: what the page answers, how fast.

The fault app has a 3-second page deadline, caching off, and GET retries on.
"""
import re
import time

import pytest

from .support.net import closed_port
from .support.faultserver import BILLING, PLANS, Drip, Hang, Reset, Respond, error, healthy

BOUND = 4.5  # seconds: the page deadline (3 s) plus rendering and slack


def _get(client, path="/billing"):
    started = time.monotonic()
    resp = client.get(path)
    return resp, resp.get_data(as_text=True), time.monotonic() - started


def test_5xx_page_shows_request_id(fault_server, fault_client):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR", "db down", request_id="rid-500")
    resp, html, took = _get(fault_client)
    assert resp.status_code == 502 and took < BOUND
    assert "The billing service had a problem" in html and "rid-500" in html
    assert "Traceback" not in html


def test_429_page_says_when_to_try_again(fault_server, fault_client):
    fault_server.handler = lambda *a: error(429, "RATE_LIMITED", request_id="rid-429",
                                            headers={"Retry-After": "42"})
    resp, html, took = _get(fault_client)
    assert resp.status_code == 503 and took < 1.5
    assert "Try again in 42 seconds" in html and "rid-429" in html
    assert resp.headers["Retry-After"] == "42"
    # the cool-down is shared: the next page does not call upstream at all
    calls = fault_server.count()
    resp, html, _ = _get(fault_client)
    assert fault_server.count() == calls and "Try again in" in html
    assert "rid-429" in html  # the pause quotes the 429 that started it


def test_refused_connection_page(fault_app, tmp_path):
    from .conftest import make_app
    port = closed_port()
    app = make_app(tmp_path / "r", GIGA_API_URL=f"http://127.0.0.1:{port}", GIGA_API_KEY="k",
                   UPSTREAM_DEADLINE="3")
    with app.app_context():
        from webapp.services.users import create_user
        create_user("v@example.com", "viewer", "long-enough-pw")
    client = app.test_client()
    client.post("/signin", data={"email": "v@example.com", "password": "long-enough-pw"})
    resp, html, took = _get(client)
    assert resp.status_code == 502 and took < BOUND
    assert "not reachable" in html and "refused the connection" in html


def test_server_that_never_answers(fault_server, fault_client):
    fault_server.handler = lambda *a: Hang(20)
    resp, html, took = _get(fault_client)
    assert resp.status_code == 504 and took < BOUND
    assert "not answering" in html


def test_slow_drip_is_cut_at_the_deadline(fault_server, fault_client):
    fault_server.handler = lambda m, p, b: Drip(healthy(m, p, b), interval=0.5)
    resp, html, took = _get(fault_client)
    assert resp.status_code == 504 and took < BOUND


def test_connection_reset(fault_server, fault_client):
    fault_server.handler = lambda *a: Reset()
    resp, html, took = _get(fault_client)
    assert resp.status_code == 502 and took < BOUND and "connection" in html


def test_html_error_page_from_upstream(fault_server, fault_client):
    fault_server.handler = lambda *a: Respond(503, "<html><body><h1>nginx</h1><script>x()</script>"
                                              "</body></html>", content_type="text/html",
                                              headers={"X-Request-Id": "edge-77"})
    resp, html, took = _get(fault_client)
    assert resp.status_code == 502 and "<h1>nginx</h1>" not in html and "x()" not in html
    assert "edge-77" in html


@pytest.mark.parametrize("body", [b"{not json", b'{"success": true, "data": {"billing": '
                                  b'{"plan": "x", "planCreditsRemaining": "lots"}}}',
                                  b'{"success": false}', b""])
def test_malformed_or_mistyped_json(fault_server, fault_client, body):
    fault_server.handler = lambda m, p, b: Respond(200, body) if p == "/api/billing" else healthy(m, p, b)
    resp, html, took = _get(fault_client)
    assert resp.status_code == 502 and took < BOUND
    assert "sent something unexpected" in html


@pytest.mark.parametrize("code", ["INVALID_API_KEY", "UNAUTHORIZED"])
def test_invalid_key_says_billing_is_unavailable_and_why(fault_server, fault_client, code):
    fault_server.handler = lambda *a: error(401, code, "Key revoked", request_id="rid-401")
    resp, html, _ = _get(fault_client)
    assert resp.status_code == 502
    assert "Billing is unavailable" in html and "revoked" in html and "rid-401" in html


def test_forbidden_key(fault_server, fault_client):
    fault_server.handler = lambda *a: error(403, "FORBIDDEN", request_id="rid-403")
    resp, html, _ = _get(fault_client)
    assert "lacks permission" in html and "rid-403" in html


def test_degraded_then_recovers(fault_server, fault_client):
    _get(fault_client)  # good figures
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR")
    resp, html, took = _get(fault_client)
    assert resp.status_code == 200 and took < BOUND
    assert re.search(r"As of \d\d:\d\d UTC</strong> — the billing service is not answering", html)
    assert 'id="total-balance">$124.50' in html
    fault_server.handler = healthy
    resp, html, _ = _get(fault_client)
    assert "not answering" not in html and 'id="total-balance">$124.50' in html


def test_stale_never_shown_for_auth_failures(fault_server, fault_client):
    _get(fault_client)
    fault_server.handler = lambda *a: error(401, "INVALID_API_KEY")
    resp, html, _ = _get(fault_client)
    assert resp.status_code == 502 and "$124.50" not in html


def test_plans_failing_alone_keeps_the_balance(fault_server, fault_client):
    fault_server.handler = lambda m, p, b: (error(500, "INTERNAL_ERROR", request_id="rid-plans")
                                             if p.endswith("/plans") else healthy(m, p, b))
    resp, html, _ = _get(fault_client)
    assert resp.status_code == 200 and "$124.50" in html
    assert "list of plans could not be read" in html and "rid-plans" in html


def test_both_reads_run_side_by_side(fault_server, fault_client):
    def slow(method, path, body):
        time.sleep(0.6)
        return healthy(method, path, body)
    fault_server.handler = slow
    resp, _, took = _get(fault_client)
    assert resp.status_code == 200 and took < 1.1  # not 1.2 s one after the other


def test_upstream_error_on_action_shows_request_id_and_message_escaped(fault_server, fault_client):
    fault_server.handler = lambda m, p, b: (error(400, "INVALID_FIELD", "<b>amount</b> bad",
                                                  hint="amount", request_id="rid-field")
                                             if p.endswith("recharge") else healthy(m, p, b))
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "q" * 24})
    html = resp.get_data(as_text=True)
    assert "rid-field" in html and "&lt;b&gt;amount&lt;/b&gt; bad" in html
    assert "Nothing was sent, so nothing was charged" in html


def _billing_with(**fields) -> bytes:
    import json
    billing = dict(BILLING["billing"])
    billing.update(fields)
    text = json.dumps({"success": True, "data": {"billing": billing}})
    for key, raw in fields.items():  # numbers exactly as written, not as Python floats
        if isinstance(raw, RawNumber):
            text = text.replace(json.dumps(raw), str(raw))
    return text.encode()


class RawNumber(str):
    """A JSON number written as given (``1e308``, 40 digits, …)."""


ODD_BILLING = {
    "total 1e308": {"totalBalance": RawNumber("1e308")},
    "total 1e300 with decimals": {"totalBalance": RawNumber("1.00000001e300")},
    "huge integer": {"prepaidBalance": RawNumber("1" + "0" * 400)},
    "finer than a cent": {"planCreditsRemaining": RawNumber("74.505")},
    "period ends at its start": {"currentPeriodEnd": "2024-03-01T00:00:00.000Z"},
    "period ends before it starts": {"currentPeriodEnd": "2024-02-01T00:00:00.000Z"},
}


@pytest.mark.parametrize("fields", ODD_BILLING.values(), ids=ODD_BILLING.keys())
@pytest.mark.parametrize("role", ["viewer", "finance", "admin"])
def test_impossible_figures_are_a_bad_response_never_a_crash(fault_server, fault_app, role,
                                                              fields):
    fault_server.handler = lambda m, p, b: (Respond(200, _billing_with(**fields))
                                            if p == "/api/billing" else healthy(m, p, b))
    client = fault_app.test_client()
    client.post("/signin", data={"email": f"{role}@example.com",
                                 "password": "correct-horse-battery"})
    resp, html, _ = _get(client)
    assert resp.status_code == 502 and "sent something unexpected" in html
    assert "Traceback" not in html


def test_an_impossible_plan_price_is_a_bad_response(fault_server, fault_client):
    import json
    plans = json.dumps({"success": True, "data": PLANS}).replace('"price": 29', '"price": 1e308')
    fault_server.handler = lambda m, p, b: (Respond(200, plans) if p == "/api/billing/plans"
                                            else healthy(m, p, b))
    resp, html, _ = _get(fault_client)
    assert resp.status_code == 200  # the balance still shows; the plans say why not
    assert "Total balance" in html and "impossible &#39;price&#39;" in html


def test_impossible_figures_leave_the_last_good_ones_on_the_page(fault_server, fault_client):
    fault_client.get("/billing")  # a good reading first
    fault_server.handler = lambda m, p, b: (Respond(200, _billing_with(
        totalBalance=RawNumber("1e308"))) if p == "/api/billing" else healthy(m, p, b))
    resp, html, _ = _get(fault_client)
    assert resp.status_code == 200 and 'id="total-balance">$124.50' in html
    assert "not answering" in html or "As of" in html
