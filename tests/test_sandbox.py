"""The built-in sandbox: a real upstream whose account survives a restart."""
from decimal import Decimal

from webapp.giga import GigaClient
from webapp.sandbox import Sandbox


def test_state_survives_a_restart(tmp_path):
    first = Sandbox(tmp_path / "state.json").start()
    try:
        client = GigaClient(first.url, first.api_key)
        checkout = client.recharge(Decimal("30"))
        first.state.settle(checkout.checkout_url.rsplit("/", 1)[1], pay=True)
    finally:
        first.stop()
    second = Sandbox(tmp_path / "state.json").start()
    try:
        billing = GigaClient(second.url, second.api_key).get_billing()
        assert billing.prepaid_balance == Decimal("80.00")
    finally:
        second.stop()


def test_checkout_page_pays_once_and_returns(sandbox):
    client = GigaClient(sandbox.url, sandbox.api_key)
    url = client.recharge(Decimal("10")).checkout_url
    path = url[len(sandbox.url):]
    browser = sandbox.app.test_client()
    assert "Pay" in browser.get(path).get_data(as_text=True)
    sandbox.return_url = "http://dashboard.test/billing"
    paid = browser.post(path + "/pay")
    assert paid.status_code == 303
    assert paid.headers["Location"] == "http://dashboard.test/billing?checkout=success"
    browser.post(path + "/pay")  # paying twice changes nothing
    assert client.get_billing().prepaid_balance == Decimal("60.00")
    assert "is paid" in browser.get(path).get_data(as_text=True)


def test_cancel_changes_nothing(sandbox):
    client = GigaClient(sandbox.url, sandbox.api_key)
    url = client.subscribe("pro").checkout_url
    sandbox.return_url = "http://dashboard.test/billing"
    resp = sandbox.app.test_client().post(url[len(sandbox.url):] + "/cancel")
    assert resp.headers["Location"].endswith("?checkout=cancel")
    assert client.get_billing().plan == "starter-pro"


def test_subscribe_to_current_plan_is_refused(sandbox):
    import pytest
    from webapp.giga import InvalidRequest
    with pytest.raises(InvalidRequest):
        GigaClient(sandbox.url, sandbox.api_key).subscribe("starter-pro")


def test_bad_recharge_bodies_are_refused(sandbox):
    import requests
    for body in ('{"amount": -5}', '{"amount": "50"}', '{"amount": 1.234}', '{"x": 1}', "nope"):
        resp = requests.post(sandbox.url + "/api/billing/recharge", data=body, timeout=5,
                             headers={"Authorization": f"Bearer {sandbox.api_key}"})
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] in ("INVALID_FIELD", "INVALID_REQUEST")


def test_flask_sandbox_spend_and_reset(runner, sandbox):
    result = runner.invoke(args=["sandbox", "spend", "30"])
    assert result.exit_code == 0 and "plan credits left 44.50" in result.output
    assert runner.invoke(args=["sandbox", "spend", "nan"]).exit_code != 0
    assert runner.invoke(args=["sandbox", "spend", "0.001"]).exit_code != 0
    assert runner.invoke(args=["sandbox", "spend", "-5"]).exit_code != 0
    assert runner.invoke(args=["sandbox", "reset"]).exit_code == 0
    assert sandbox.state.billing()["planCreditsRemaining"] == __import__("decimal").Decimal("74.50")
