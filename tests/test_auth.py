"""Sign-in, throttling, the next rule, sessions and cookies."""
from urllib.parse import parse_qs, urlsplit

import pytest

from webapp.security import is_safe_next

from .conftest import AuthActions


def test_wrong_password_and_unknown_email_get_one_message(client):
    a = client.post("/signin", data={"email": "finance@demo.test", "password": "nope"})
    b = client.post("/signin", data={"email": "nobody@demo.test", "password": "nope"})
    assert a.status_code == b.status_code == 401
    assert "Wrong email or password." in a.get_data(as_text=True)
    assert "Wrong email or password." in b.get_data(as_text=True)
    assert client.get("/billing").status_code == 302


def test_passwords_are_hashed(app):
    with app.app_context():
        from webapp.models import User
        user = User.query.filter_by(email="finance@demo.test").one()
        assert "demo" not in user.password_hash and user.password_hash.startswith("scrypt:")


def test_failures_are_throttled_per_account(client, auth):
    for _ in range(5):
        client.post("/signin", data={"email": "finance@demo.test", "password": "bad"})
    resp = auth.login("finance")  # the right password, too late
    assert resp.status_code == 429
    assert "Too many failed sign-ins" in resp.get_data(as_text=True)
    assert client.get("/billing").status_code == 302
    assert auth.login("viewer").status_code == 302  # another account is unaffected


def test_failures_are_throttled_per_address(tmp_path, sandbox):
    from .conftest import AuthActions, make_app
    app = make_app(tmp_path, SANDBOX=sandbox, LOGIN_MAX_FAILURES_PER_ADDRESS="3")
    client = app.test_client()
    for i in range(3):
        client.post("/signin", data={"email": f"guess{i}@demo.test", "password": "bad"})
    assert AuthActions(client).login("viewer").status_code == 429
    other = app.test_client()
    resp = other.post("/signin", data={"email": "viewer@demo.test", "password": "demo"},
                      environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert resp.status_code == 302


@pytest.mark.parametrize("target,followed", [
    ("/audit", True), ("/billing?checkout=cancel", True),
    ("https://evil.example/", False), ("//evil.example/", False), ("/\\evil.example", False),
    ("javascript:alert(1)", False), ("http:/evil.example", False), ("audit", False),
    ("/%0d%0aSet-Cookie:x", True), ("/\x00x", False)])
def test_next_is_followed_only_to_a_path_here(client, target, followed):
    resp = client.post("/signin", query_string={"next": target},
                       data={"email": "admin@demo.test", "password": "demo"})
    assert resp.status_code == 302
    assert (resp.headers["Location"] == target) is followed
    if not followed:
        assert resp.headers["Location"] == "/billing"


@pytest.mark.parametrize("target,kept", [
    (None, None), ("/audit", "/audit"), ("/billing?checkout=cancel", "/billing?checkout=cancel"),
    ("https://evil.example/", None), ("//evil.example/", None), ("/\\evil.example", None)])
def test_login_as_people_type_it_leads_to_sign_in(client, target, kept):
    resp = client.get("/login", query_string={"next": target} if target else {})
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/signin" and not location.netloc
    assert parse_qs(location.query).get("next") == ([kept] if kept else None)
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200 and "Sign in" in page.get_data(as_text=True)
    signed_in = client.post(resp.headers["Location"],
                            data={"email": "admin@demo.test", "password": "demo"})
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == (kept or "/billing")


def test_is_safe_next_unit():
    assert is_safe_next("/billing") and not is_safe_next(None) and not is_safe_next("")


def test_sign_out_revokes_the_session_even_for_a_replayed_cookie(client, auth):
    auth.login("finance")
    stolen = client.get_cookie("giga_session").value
    assert client.get("/billing").status_code == 200
    auth.logout()
    assert client.get("/billing").status_code == 302
    client.set_cookie("giga_session", stolen)
    assert client.get("/billing").status_code == 302


def test_sign_in_renews_the_session(client, auth):
    client.get("/signin")
    before = client.get_cookie("giga_session")
    auth.login("finance")
    after = client.get_cookie("giga_session")
    assert after is not None and (before is None or before.value != after.value)


def _age_sessions(tmp_path, sandbox, setting, value, **shift):
    """Sign a viewer in on an app with ``setting``, then age their session by ``shift``."""
    from datetime import timedelta
    from .conftest import AuthActions, make_app
    from webapp.extensions import db
    from webapp.models import UserSession
    app = make_app(tmp_path, SANDBOX=sandbox, **{setting: value})
    client = app.test_client()
    AuthActions(client).login("viewer")
    assert client.get("/billing").status_code == 200
    with app.app_context():
        for record in UserSession.query.all():
            record.last_seen_at -= timedelta(**shift.get("idle", {}))
            record.created_at -= timedelta(**shift.get("age", {}))
        db.session.commit()
    return client


def test_idle_session_expires(tmp_path, sandbox):
    client = _age_sessions(tmp_path, sandbox, "SESSION_IDLE_MINUTES", "5", idle={"minutes": 7})
    assert client.get("/billing").status_code == 302


def test_active_session_survives(tmp_path, sandbox):
    client = _age_sessions(tmp_path, sandbox, "SESSION_IDLE_MINUTES", "5", idle={"minutes": 4})
    assert client.get("/billing").status_code == 200


def test_absolute_session_lifetime(tmp_path, sandbox):
    client = _age_sessions(tmp_path, sandbox, "SESSION_MAX_HOURS", "1", age={"hours": 2})
    assert client.get("/billing").status_code == 302


def test_cookie_flags(client, auth):
    resp = auth.login("finance")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_cookie_is_secure_over_https(client):
    resp = client.post("/signin", data={"email": "finance@demo.test", "password": "demo"},
                       base_url="https://localhost")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_deleted_user_is_signed_out(client, auth, app):
    auth.login("viewer")
    with app.app_context():
        from webapp.services.users import delete_user
        delete_user("viewer@demo.test")
    assert client.get("/billing").status_code == 302


def test_a_user_active_every_40_seconds_stays_signed_in_with_a_one_minute_limit(tmp_path,
                                                                                sandbox):
    """last_seen_at is written only every so often; the idle check allows for that."""
    from webapp.clock import FrozenClock
    from .conftest import AuthActions, make_app
    clock = FrozenClock()
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, SESSION_IDLE_MINUTES="1")
    client = app.test_client()
    AuthActions(client).login("viewer")
    for _ in range(6):  # four minutes of a request every 40 seconds
        clock.advance(40)
        assert client.get("/billing").status_code == 200
    clock.advance(61 + 30)  # idle past the limit (and its write allowance): signed out
    assert client.get("/billing").status_code == 302


def _sign_in(client, email, password, address):
    return client.post("/signin", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_failures_elsewhere_never_lock_the_owner_out(client):
    """Five wrong passwords from one address refuse that address for that account only."""
    for _ in range(6):
        _sign_in(client, "finance@demo.test", "bad", "10.0.0.66")
    assert _sign_in(client, "finance@demo.test", "demo", "10.0.0.66").status_code == 429
    owner = _sign_in(client.application.test_client(), "finance@demo.test", "demo", "10.0.0.7")
    assert owner.status_code == 302


def test_an_account_under_attack_spaces_failures_out_without_holding_a_thread(
        tmp_path, sandbox):
    """Past five failures (from anywhere) an address that failed recently is told at once
    to wait (429, Retry-After), doubling; a clean address is answered at once, and the
    owner's right password from one goes straight in. Nothing sleeps on the request."""
    from webapp.clock import FrozenClock
    from .conftest import make_app
    clock = FrozenClock()
    client = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock).test_client()
    slept = []
    clock.sleep = slept.append  # any sleep on the request path would show here
    for i in range(5):  # spread over addresses, so no address limit is reached
        assert _sign_in(client, "finance@demo.test", "bad", f"10.1.0.{i}").status_code == 401
    refused = _sign_in(client, "finance@demo.test", "bad", "10.1.0.0")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "Try again in 1 second" in refused.get_data(as_text=True)
    assert _sign_in(client, "finance@demo.test", "bad", "10.2.0.1").status_code == 401  # clean
    clock.advance(0.3)
    assert _sign_in(client, "finance@demo.test", "bad", "10.1.0.0").status_code == 429
    clock.advance(0.3)  # ½ s after the 6th failure: the 7th may be checked
    assert _sign_in(client, "finance@demo.test", "bad", "10.1.0.0").status_code == 401
    waits = []
    for i in range(1, 5):  # each failure doubles the spacing: 1 s, 2 s, 4 s, then 4 s
        resp = _sign_in(client, "finance@demo.test", "bad", f"10.1.0.{i}")
        waits.append(int(resp.headers["Retry-After"]))
        clock.advance(waits[-1])
        assert _sign_in(client, "finance@demo.test", "bad", f"10.1.0.{i}").status_code == 401
    assert waits == [1, 2, 4, 4]
    # the owner, from an address without failures, with the right password: straight in
    assert _sign_in(client, "finance@demo.test", "demo", "10.3.0.1").status_code == 302
    assert slept == []


def test_an_ipv6_network_counts_as_one_address(client):
    """One host's /64 holds millions of addresses: they share one limit."""
    for i in range(1, 6):
        _sign_in(client, "finance@demo.test", "bad", f"2001:db8:1:2::{i:x}")
    assert _sign_in(client, "finance@demo.test", "demo", "2001:db8:1:2::99").status_code == 429
    assert _sign_in(client, "finance@demo.test", "demo", "2001:db8:1:3::1").status_code == 302


def test_a_forwarded_header_without_trust_proxy_is_warned_about_once(client, caplog):
    import logging
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        client.get("/signin", headers={"X-Forwarded-For": "203.0.113.9"})
    assert caplog.text.count("TRUST_PROXY is 0") == 1


def test_live_sessions_per_user_are_capped_oldest_ended_first(app):
    from webapp.models import UserSession
    clients = []
    for _ in range(12):
        client = app.test_client()
        assert AuthActions(client).login("viewer").status_code == 302
        clients.append(client)
    assert [c.get("/billing").status_code for c in clients] == [302, 302] + [200] * 10
    with app.app_context():
        assert UserSession.query.count() == 10


def test_expired_sessions_are_purged_on_a_schedule_without_their_cookies(tmp_path, sandbox):
    from webapp.services.sessions import purge_expired
    from webapp.clock import FrozenClock
    from webapp.models import UserSession
    from .conftest import make_app
    clock = FrozenClock()
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, SESSION_IDLE_MINUTES="30")
    for role in ("viewer", "finance", "admin"):
        AuthActions(app.test_client()).login(role)
    with app.app_context():
        assert purge_expired(clock.now()) == 0
        clock.advance(31 * 60 + 60)  # past the idle limit (and the write interval it allows)
        assert purge_expired(clock.now()) == 3
        assert UserSession.query.count() == 0


def test_simultaneous_wrong_passwords_are_checked_at_most_the_limit(app, monkeypatch):
    """40 wrong passwords for one account from one address, all at once: each attempt is
    counted before its password is checked, so no more than LOGIN_MAX_FAILURES are."""
    from .support.races import wrong_passwords_at_once

    checks, statuses = wrong_passwords_at_once(app, monkeypatch)
    assert len(statuses) == 40 and set(statuses) <= {401, 429}
    assert len(checks) == statuses.count(401) <= app.config["LOGIN_MAX_FAILURES"]
    # the owner, from elsewhere, is still let in
    assert _sign_in(app.test_client(), "finance@demo.test", "demo", "10.4.0.2").status_code == 302


@pytest.mark.parametrize("forged", [["not-an-address-{i}"], ["10.0.0.{i}:80"],
                                    ["[2001:db8::{i}]", "unknown"]],
                         ids=["words", "with a port", "bracketed or unknown"])
def test_forwarded_values_that_are_not_addresses_share_the_peers_limit(tmp_path, sandbox,
                                                                        forged):
    """With TRUST_PROXY the forwarded address is used only when it is an IP address;
    anything else counts as the peer it came from, so inventing text gets nowhere."""
    from .conftest import make_app
    client = make_app(tmp_path, SANDBOX=sandbox, TRUST_PROXY="1").test_client()

    def attempt(i, password="bad"):
        value = forged[i % len(forged)].format(i=i)
        return client.post("/signin", data={"email": "finance@demo.test", "password": password},
                           headers={"X-Forwarded-For": value},
                           environ_base={"REMOTE_ADDR": "10.5.0.1"})
    assert [attempt(i).status_code for i in range(5)] == [401] * 5
    # a value never sent before: the peer's five failures count against it
    assert attempt(len(forged) * 99, "demo").status_code == 429
    valid = client.post("/signin", data={"email": "finance@demo.test", "password": "demo"},
                        headers={"X-Forwarded-For": "203.0.113.7"},
                        environ_base={"REMOTE_ADDR": "10.5.0.1"})
    assert valid.status_code == 302  # a real forwarded address is its own client


def test_trust_proxy_with_requests_that_carry_no_forwarded_header_is_warned_about_once(
        tmp_path, sandbox, caplog):
    """TRUST_PROXY is on but clients reach the dashboard without a proxy: anyone can then
    choose their address in X-Forwarded-For. Said once, not per request."""
    import logging
    from .conftest import make_app
    client = make_app(tmp_path, SANDBOX=sandbox, TRUST_PROXY="1").test_client()
    caplog.set_level(logging.WARNING)
    client.get("/signin", headers={"X-Forwarded-For": "203.0.113.9"})
    assert "X-Forwarded-For" not in caplog.text
    for _ in range(3):
        client.get("/signin")
    assert caplog.text.count("TRUST_PROXY is 1 but a request came without X-Forwarded-For") == 1
