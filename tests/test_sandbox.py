"""The built-in sandbox: a real upstream whose account survives a restart."""
import re
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


def press(browser, path, choice):
    """Press Pay or Cancel on the checkout page at ``path``, as a browser would."""
    page = browser.get(path).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return browser.post(f"{path}/{choice}", data={"csrf_token": token})


def test_checkout_page_pays_once_and_returns(sandbox):
    client = GigaClient(sandbox.url, sandbox.api_key)
    url = client.recharge(Decimal("10")).checkout_url
    path = url[len(sandbox.url):]
    browser = sandbox.app.test_client()
    assert "Pay" in browser.get(path).get_data(as_text=True)
    sandbox.note_return(url, "http://dashboard.test/billing")
    paid = press(browser, path, "pay")
    assert paid.status_code == 303
    assert paid.headers["Location"] == "http://dashboard.test/billing?checkout=success"
    browser.post(path + "/pay")  # paying twice changes nothing
    assert client.get_billing().prepaid_balance == Decimal("60.00")
    assert "is paid" in browser.get(path).get_data(as_text=True)


def test_cancel_changes_nothing(sandbox):
    client = GigaClient(sandbox.url, sandbox.api_key)
    url = client.subscribe("pro").checkout_url
    sandbox.note_return(url, "http://dashboard.test/billing")
    resp = press(sandbox.app.test_client(), url[len(sandbox.url):], "cancel")
    assert resp.headers["Location"].endswith("?checkout=cancel")
    assert client.get_billing().plan == "starter-pro"


def test_checkout_forms_need_their_csrf_token(sandbox):
    client = GigaClient(sandbox.url, sandbox.api_key)
    path = client.recharge(Decimal("10")).checkout_url[len(sandbox.url):]
    browser = sandbox.app.test_client()
    assert 'name="csrf_token"' in browser.get(path).get_data(as_text=True)
    forged = browser.post(path + "/pay")  # a page elsewhere posting to Pay
    assert forged.status_code == 400
    assert client.get_billing().prepaid_balance == Decimal("50.00")
    assert press(browser, path, "pay").status_code == 200  # no return address: a page
    assert client.get_billing().prepaid_balance == Decimal("60.00")


def test_a_host_header_never_decides_where_others_return(app, auth, sandbox):
    """Each checkout returns to the dashboard as the request that started it saw it."""
    attacker = app.test_client()
    attacker.post("/signin", data={"email": "viewer@demo.test", "password": "demo"},
                  headers={"Host": "evil.example"})
    attacker.get("/billing", headers={"Host": "evil.example"})
    finance = app.test_client()
    finance.post("/signin", data={"email": "finance@demo.test", "password": "demo"})
    url = finance.post("/billing/topup", data={"amount": "20", "nonce": "n" * 24}).location
    paid = press(sandbox.app.test_client(), url[len(sandbox.url):], "pay")
    assert paid.headers["Location"] == "http://localhost/billing?checkout=success"


def test_public_url_sets_the_return_address(tmp_path, sandbox):
    from .conftest import make_app
    app = make_app(tmp_path, SANDBOX=sandbox, PUBLIC_URL="https://billing.example.com/")
    client = app.test_client()
    client.post("/signin", data={"email": "finance@demo.test", "password": "demo"},
                headers={"Host": "evil.example"})
    url = client.post("/billing/topup", data={"amount": "20", "nonce": "p" * 24},
                      headers={"Host": "evil.example"}).location
    paid = press(sandbox.app.test_client(), url[len(sandbox.url):], "pay")
    assert paid.headers["Location"] == "https://billing.example.com/billing?checkout=success"


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


def test_sandbox_users_never_reach_the_real_database(tmp_path, sandbox, fault_server):
    """Demo accounts, and anyone added while signed in as one, live in the sandbox's
    own database (instance/sandbox.db), never the real one."""
    from webapp import create_app, prepare
    from webapp.models import User

    base = {"TESTING": True, "WTF_CSRF_ENABLED": False, "INSTANCE_PATH": str(tmp_path)}
    demo = prepare(create_app({**base, "GIGA_SANDBOX": "1", "SANDBOX": sandbox})).test_client()
    demo.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    added = demo.post("/users", data={"email": "stays@example.com", "role": "admin",
                                      "password": "violet-anchor-meadow-42"})
    assert added.status_code == 302 and (tmp_path / "sandbox.db").exists()

    real = prepare(create_app({**base, "GIGA_API_KEY": "giga_sk_live",
                               "GIGA_API_URL": fault_server.url}))
    assert real.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'dashboard.db'}"
    with real.app_context():
        assert User.query.count() == 0
    for email, password in (("stays@example.com", "violet-anchor-meadow-42"),
                            ("admin@demo.test", "demo")):
        resp = real.test_client().post("/signin", data={"email": email, "password": password})
        assert resp.status_code != 302


def test_a_command_that_never_calls_the_api_starts_no_sandbox_and_prints_no_password(
        tmp_path, capfd):
    """``flask sandbox spend`` and ``flask users …`` only touch the sandbox's account
    file and the database: no second sandbox server, no demo passwords on the screen."""
    from .conftest import make_app
    app = make_app(tmp_path, GIGA_SANDBOX="1", SANDBOX_STATE_PATH=str(tmp_path / "state.json"),
                   SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.db'}")
    result = app.test_cli_runner().invoke(args=["sandbox", "spend", "30"])
    assert result.exit_code == 0 and "Spent 30: plan credits left 44.50" in result.output
    assert app.extensions["sandbox"].running is False
    out, err = capfd.readouterr()
    assert "password" not in result.output + out + err
    # the first call to the API starts it, in this process, once
    with app.app_context():
        gateway = app.extensions["giga_gateway"]
        clock = app.extensions["clock"]
        assert gateway.billing(clock.monotonic() + 5).value.plan_credits_remaining == 44.5
    assert app.extensions["sandbox"].running is True
    app.extensions["sandbox"].stop()


def _as_the_page_says(client) -> dict:
    """The billing page's "used this period", its "This period" table's total row and
    its gauge, as the page reads them (its reading recorded after it, as ever)."""
    from webapp.services.arrivals import settle

    html = client.get("/billing").get_data(as_text=True)
    settle(client.application)
    found = {"used": r'id="used-this-period">\s*<strong>([^<]*)</strong>',
             "table total": r'(<tfoot>.*?</tfoot>)', "gauge": r'(<meter class="gauge"[^>]*>)',
             "gauge words": r'id="gauge-text">([^<]*)<'}
    return {name: re.search(pattern, html, re.S).group(1) for name, pattern in found.items()}


def test_reset_starts_the_sandbox_over_whole(own_sandbox):
    """``flask sandbox reset`` after spending (past the 50 % alert) and a top-up: the
    page's "used this period", its table and its gauge read again as on the first start
    (they used to disagree), the trail holds the made-up month's one top-up and no
    alert has fired, as on a first start."""
    from webapp.models import Alert, AlertState, AuditEntry, User

    app, client, runner = own_sandbox
    sandbox = app.extensions["sandbox"]
    first = _as_the_page_says(client)
    assert first["used"] == "$25.50"
    assert runner.invoke(args=["sandbox", "spend", "30"]).exit_code == 0
    location = client.post("/billing/topup", data={"amount": "20", "nonce": "z" * 24}
                           ).headers["Location"]
    paid = press(sandbox.app.test_client(), location[len(sandbox.url):], "pay")
    assert paid.status_code in (302, 303)
    assert _as_the_page_says(client)["used"] != first["used"]
    with app.app_context():
        # 50 % of the plan credits used; and $30 within minutes, against the seeded
        # week's cents an hour, is a spend spike
        assert sorted(a.rule for a in Alert.query) == ["plan credits", "spend spike"]

    result = runner.invoke(args=["sandbox", "reset"])
    assert result.exit_code == 0, result.output
    assert _as_the_page_says(client) == first
    with app.app_context():
        trail = AuditEntry.query.all()
        assert [(e.action, e.request_id) for e in trail] == [("top-up", "sandbox-seed")]
        assert Alert.query.count() == 0
        assert AlertState.query.filter_by(armed=False).count() == 0
        assert User.query.filter_by(is_demo=True).count() == 3  # users stay

