"""The account basics (issue 29, point 7): changing one's own password, an admin setting
someone else's (page and ``flask users set-password``), and sign-ins, refused sign-ins
and sign-outs on the audit trail with the way in."""
import re
from datetime import datetime, timezone

import pytest

from webapp.clock import FrozenClock
from webapp.extensions import db
from webapp.models import VIA_SSO, AuditEntry, User, UserSession
from webapp.services.trail import PASSWORD_CHANGED, SIGN_IN_REFUSED, SIGNED_IN, SIGNED_OUT
from webapp.services.users import create_user

from .conftest import AuthActions, make_app
from .support.dblocks import PostgresTableLock
from .support.postgres import PG_URL, emptied_postgres, with_driver

OLD = "correct-horse-battery"
NEW = "violet-anchor-meadow-42"
ANA = "ana@example.com"


@pytest.fixture
def ana(app):
    """A viewer with a password of her own (the demo accounts keep theirs)."""
    with app.app_context():
        return create_user(ANA, "viewer", OLD).id


def _signed_in(app, email=ANA, password=OLD, address="127.0.0.1"):
    client = app.test_client()
    resp = client.post("/signin", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})
    assert resp.status_code == 302, resp.status_code
    return client


def _change(client, current=OLD, new=NEW, repeat=None, **kwargs):
    return client.post("/account/password", data={
        "current": current, "new": new, "repeat": new if repeat is None else repeat}, **kwargs)


def _signs_in(app, email, password) -> bool:
    resp = app.test_client().post("/signin", data={"email": email, "password": password},
                                  environ_base={"REMOTE_ADDR": "10.7.7.7"})
    return resp.status_code == 302


def _rows(app, action):
    with app.app_context():
        return AuditEntry.query.filter_by(action=action).order_by(AuditEntry.id).all()


def _field_error(html, field):
    """The message shown by ``field`` (its ``-error`` paragraph), or None."""
    found = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', html, re.S)
    return re.sub(r"<[^>]+>", "", found.group(1)).strip() if found else None


# --- changing one's own password ---------------------------------------------------------

def test_a_viewer_changes_their_password_and_their_other_sessions_end(app, ana):
    here, elsewhere, third = (_signed_in(app) for _ in range(3))
    page = here.get("/billing").get_data(as_text=True)
    assert 'href="/account/password"' in page  # in the header, by Sign out
    resp = _change(here, follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert ("Your password has been changed. You stay signed in here; your 2 other sessions "
            "(other browsers or devices) were signed out.") in html
    assert here.get("/billing").status_code == 200  # this one stays
    assert elsewhere.get("/billing").status_code == 302  # the others are gone
    assert third.get("/billing").status_code == 302
    assert not _signs_in(app, ANA, OLD) and _signs_in(app, ANA, NEW)
    row, = _rows(app, PASSWORD_CHANGED)
    assert (row.user_email, row.user_role, row.subject, row.outcome, row.detail) == (
        ANA, "viewer", ANA, "done", "2 other sessions ended.")


def test_a_wrong_current_password_changes_nothing(app, ana):
    here, elsewhere = _signed_in(app), _signed_in(app)
    resp = _change(here, current="not-my-password")
    assert resp.status_code == 422
    assert _field_error(resp.get_data(as_text=True), "current") == \
        "That is not your current password."
    assert elsewhere.get("/billing").status_code == 200
    assert _signs_in(app, ANA, OLD) and not _signs_in(app, ANA, NEW)
    assert _rows(app, PASSWORD_CHANGED) == []


def test_wrong_current_passwords_count_against_sign_in_throttling(app, ana):
    """A session left open is no way to guess its owner's password faster than sign-in."""
    here = _signed_in(app)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert _change(here, current="a-wrong-guess").status_code == 422
    refused = _change(here)  # the right one, from the address that failed: too late
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
    assert "Too many wrong passwords. Try again in 15 minutes." in \
        _field_error(refused.get_data(as_text=True), "current")
    assert app.test_client().post("/signin", data={"email": ANA, "password": OLD}
                                  ).status_code == 429  # the same count as sign-in's
    assert _signs_in(app, ANA, OLD)  # from elsewhere: the owner is never locked out


def test_a_right_current_password_clears_the_earlier_failures(app, ana):
    here = _signed_in(app)
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        _change(here, current="a-wrong-guess")
    assert _change(here).status_code == 303
    assert _change(here, current=NEW, new="amber-lantern-orchard-97").status_code == 303


@pytest.mark.parametrize("new,repeat,field,message", [
    ("short-pw", None, "new", "The password must have at least 12 characters."),
    ("password1234", None, "new", "This password is too common or easy to guess."),
    ("password1234", "", "repeat", "Enter the new password again."),  # both, at once
    (OLD, None, "new", "The new password is the same as the current one: choose another."),
    (NEW, NEW + "x", "repeat", "The two new passwords differ: type the same one twice."),
    ("", "", "new", "The password cannot be blank."),
])
def test_the_new_password_keeps_the_rule_and_the_repeat_matches(app, ana, new, repeat, field,
                                                                 message):
    here, elsewhere = _signed_in(app), _signed_in(app)
    resp = _change(here, new=new, repeat=repeat)
    assert resp.status_code == 422
    assert _field_error(resp.get_data(as_text=True), field).startswith(message)
    assert elsewhere.get("/billing").status_code == 200
    assert _signs_in(app, ANA, OLD)


def test_the_form_needs_the_csrf_token(csrf_app):
    with csrf_app.app_context():
        create_user(ANA, "viewer", OLD)
    client = csrf_app.test_client()
    page = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/signin", data={"email": ANA, "password": OLD, "csrf_token": token})
    form = client.get("/account/password").get_data(as_text=True)
    assert 'name="csrf_token"' in form
    forged = _change(client)
    assert forged.status_code == 400 and "This form has expired" in forged.get_data(as_text=True)
    with csrf_app.app_context():
        assert User.query.filter_by(email=ANA).one().check_password(OLD)


def test_a_user_without_a_password_is_told_they_use_single_sign_on(app, ana):
    here = _signed_in(app)
    with app.app_context():
        user = db.session.get(User, ana)
        user.password_hash, user.oidc_issuer, user.oidc_subject = None, "https://id.example", "a1"
        db.session.commit()
    page = here.get("/account/password").get_data(as_text=True)
    assert "You sign in through your company’s identity provider (single sign-on)" in page
    assert 'name="current"' not in page
    assert _change(here).status_code == 403
    with app.app_context():
        assert db.session.get(User, ana).password_hash is None


def test_a_demo_account_keeps_the_published_password(client, auth, app):
    auth.login("viewer")
    page = client.get("/account/password").get_data(as_text=True)
    assert "This is a demo account" in page and 'name="current"' not in page
    assert _change(client, current="demo").status_code == 403
    assert _signs_in(app, "viewer@demo.test", "demo")


def test_signing_in_is_needed(client):
    resp = client.get("/account/password")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/signin")


# --- an admin sets someone else's ----------------------------------------------------------

def test_an_admin_sets_a_password_and_every_session_of_that_user_ends(client, auth, app, ana):
    one, two = _signed_in(app), _signed_in(app)
    auth.login("admin")
    users = client.get("/users").get_data(as_text=True)
    assert f'href="/users/{ana}/password"' in users
    form = client.get(f"/users/{ana}/password").get_data(as_text=True)
    assert f"Set a password for {ANA}" in form
    resp = client.post(f"/users/{ana}/password", data={"password": NEW, "repeat": NEW},
                       follow_redirects=True)
    assert f"New password set for {ANA}; 2 sessions of theirs ended." in \
        resp.get_data(as_text=True)
    assert one.get("/billing").status_code == 302 and two.get("/billing").status_code == 302
    assert client.get("/users").status_code == 200  # the admin's own stays
    assert not _signs_in(app, ANA, OLD) and _signs_in(app, ANA, NEW)
    row, = _rows(app, PASSWORD_CHANGED)
    assert (row.user_email, row.user_role, row.subject, row.detail) == (
        "admin@demo.test", "admin", ANA, "2 sessions ended.")


@pytest.mark.parametrize("password,repeat,field,message", [
    ("password1234", None, "password", "This password is too common or easy to guess."),
    (NEW, "something-else-entirely", "repeat", "The two passwords differ"),
])
def test_the_admins_page_keeps_the_rule(client, auth, app, ana, password, repeat, field,
                                        message):
    signed_in = _signed_in(app)
    auth.login("admin")
    resp = client.post(f"/users/{ana}/password", data={
        "password": password, "repeat": password if repeat is None else repeat})
    assert resp.status_code == 422
    assert _field_error(resp.get_data(as_text=True), field).startswith(message)
    assert signed_in.get("/billing").status_code == 200 and _signs_in(app, ANA, OLD)


def test_an_admin_changes_their_own_on_the_password_page(client, auth, app):
    auth.login("admin")
    with app.app_context():
        me = User.query.filter_by(email="admin@demo.test").one().id
    assert f'href="/users/{me}/password"' not in client.get("/users").get_data(as_text=True)
    resp = client.post(f"/users/{me}/password", data={"password": NEW, "repeat": NEW})
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/password"
    assert _signs_in(app, "admin@demo.test", "demo")


def test_the_page_gives_no_password_to_a_single_sign_on_user(client, auth, app, ana):
    with app.app_context():
        user = db.session.get(User, ana)
        user.password_hash, user.oidc_issuer, user.oidc_subject = None, "https://id.example", "a1"
        db.session.commit()
    auth.login("admin")
    assert "none (single sign-on)" in client.get("/users").get_data(as_text=True)
    page = client.get(f"/users/{ana}/password").get_data(as_text=True)
    assert "signs in through single sign-on and has no password here" in page
    assert "flask users set-password ana@example.com" in page and 'name="password"' not in page
    assert client.post(f"/users/{ana}/password",
                       data={"password": NEW, "repeat": NEW}).status_code == 403
    with app.app_context():
        assert db.session.get(User, ana).password_hash is None
    assert _rows(app, PASSWORD_CHANGED) == []


@pytest.mark.parametrize("role", ["viewer", "finance"])
def test_only_admins_set_other_peoples_passwords(client, auth, app, ana, role):
    auth.login(role)
    assert client.get(f"/users/{ana}/password").status_code == 403
    assert client.post(f"/users/{ana}/password",
                       data={"password": NEW, "repeat": NEW}).status_code == 403
    assert _signs_in(app, ANA, OLD)


def test_the_command_line_sets_a_password_prompted_hidden_and_confirmed(runner, app, ana):
    signed_in = _signed_in(app)
    result = runner.invoke(args=["users", "set-password", "ANA@example.com"],
                           input=f"{NEW}\n{NEW}\n")
    assert result.exit_code == 0, result.output
    assert NEW not in result.output  # hidden as typed
    assert result.output.count("New password:") == 1 and "Repeat for confirmation" in \
        result.output
    assert "New password set for ana@example.com; 1 session ended." in result.output
    assert signed_in.get("/billing").status_code == 302
    assert _signs_in(app, ANA, NEW)
    row, = _rows(app, PASSWORD_CHANGED)
    assert (row.user_email, row.user_role, row.subject) == ("(command line)", "cli", ANA)


def test_the_command_line_keeps_the_rule(runner, app, ana):
    weak = runner.invoke(args=["users", "set-password", ANA, "--password", "password1234"])
    assert weak.exit_code == 1 and "too common or easy to guess" in weak.output
    differ = runner.invoke(args=["users", "set-password", ANA], input=f"{NEW}\n{NEW}x\n{NEW}\n"
                           f"{NEW}\n")
    assert "do not match" in differ.output and differ.exit_code == 0  # asked again
    nobody = runner.invoke(args=["users", "set-password", "nobody@example.com",
                                 "--password", NEW])
    assert nobody.exit_code == 1 and "No user with email nobody@example.com" in nobody.output
    demo = runner.invoke(args=["users", "set-password", "viewer@demo.test", "--password", NEW])
    assert demo.exit_code == 1 and "demo account" in demo.output


def test_the_command_line_is_the_break_glass_way_in_for_a_single_sign_on_user(runner, app,
                                                                             ana):
    with app.app_context():
        user = db.session.get(User, ana)
        user.password_hash, user.oidc_issuer, user.oidc_subject = None, "https://id.example", "a1"
        db.session.commit()
    result = runner.invoke(args=["users", "set-password", ANA, "--password", NEW])
    assert result.exit_code == 0, result.output
    assert "signed in only through single sign-on until now" in result.output
    assert _signs_in(app, ANA, NEW)
    row, = _rows(app, PASSWORD_CHANGED)
    assert row.detail == "0 sessions ended; first password (single sign-on only until now)."


# --- sign-ins, refused sign-ins and sign-outs on the trail ----------------------------------

def test_sign_in_and_sign_out_are_on_the_trail_with_the_way_in(app, ana):
    client = _signed_in(app)
    with app.app_context():
        assert UserSession.query.one().via == "password"
    AuthActions(client).logout()
    assert client.get("/billing").status_code == 302
    signed_in, = _rows(app, SIGNED_IN)
    signed_out, = _rows(app, SIGNED_OUT)
    assert (signed_in.user_email, signed_in.user_role, signed_in.detail) == (
        ANA, "viewer", "password from 127.0.0.1")
    assert (signed_out.user_email, signed_out.user_role, signed_out.detail) == (
        ANA, "viewer", "password from 127.0.0.1")


def test_a_sign_out_names_the_way_the_session_came_in(app, ana):
    """The session's own record says how it came in (``start_session(user, via=...)``);
    signing out reads it from there."""
    client = _signed_in(app)
    with app.app_context():
        UserSession.query.one().via = VIA_SSO
        db.session.commit()
    AuthActions(client).logout()
    assert _rows(app, SIGNED_OUT)[0].detail == "SSO from 127.0.0.1"
    auditor = _signed_in(app, "finance@demo.test", "demo")
    page = auditor.get("/audit?action=signed+out").get_data(as_text=True)
    assert "with single sign-on" in page


def test_refused_sign_ins_are_folded_by_reason_address_and_minute(still_app):
    app = still_app
    client = app.test_client()
    for email in ("finance@demo.test", "nobody@example.com", "finance@demo.test"):
        resp = client.post("/signin", data={"email": email, "password": "wrong"},
                           environ_base={"REMOTE_ADDR": "10.5.5.5"})
        assert resp.status_code == 401
    client.post("/signin", data={"email": "viewer@demo.test", "password": "wrong"},
                environ_base={"REMOTE_ADDR": "10.6.6.6"})
    here, there = _rows(app, SIGN_IN_REFUSED)
    assert (here.user_email, here.outcome, here.repeats, here.detail) == (
        "finance@demo.test", "refused: wrong email or password", 3,
        "via password from 10.5.5.5.")
    assert (there.user_email, there.repeats) == ("viewer@demo.test", 1)


def test_a_flood_of_failed_sign_ins_from_one_address_is_one_row(tmp_path, sandbox):
    """200 failed sign-ins from one address within a minute: one row that counts them, so
    a flood cannot bury the trail; the next minute starts a row of its own."""
    clock = FrozenClock(datetime(2026, 12, 1, 9, 0, 5, tzinfo=timezone.utc))
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, LOGIN_MAX_FAILURES="1000",
                   LOGIN_MAX_FAILURES_PER_ADDRESS="1000")
    client = app.test_client()
    for i in range(200):
        resp = client.post("/signin", data={"email": f"guess{i % 7}@example.com",
                                            "password": f"nope-{i}"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert resp.status_code == 401
        clock.advance(0.25)  # 50 s in all: the same minute
    row, = _rows(app, SIGN_IN_REFUSED)
    assert (row.repeats, row.user_email, row.outcome) == (
        200, "guess0@example.com", "refused: wrong email or password")
    clock.advance(10)
    client.post("/signin", data={"email": "guess0@example.com", "password": "nope"},
                environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert [r.repeats for r in _rows(app, SIGN_IN_REFUSED)] == [200, 1]
    auditor = _signed_in(app, "finance@demo.test", "demo", address="198.51.100.1")
    page = auditor.get("/audit?action=sign-in+refused").get_data(as_text=True)
    assert "200 sign-ins refused this minute" in page
    assert "via password from 203.0.113.9." in page and "(first email typed)" in page


def test_throttled_sign_ins_are_folded_under_their_own_reason(tmp_path, sandbox):
    """With the usual limits the same flood is two rows: the failures checked, then the
    attempts throttling refused unchecked."""
    clock = FrozenClock(datetime(2026, 12, 1, 9, 0, 5, tzinfo=timezone.utc))
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock)
    client = app.test_client()
    limit = app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"]
    codes = [client.post("/signin", data={"email": f"guess{i}@example.com", "password": "x"},
                         environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code
             for i in range(limit + 30)]
    assert codes.count(401) == limit and codes.count(429) == 30
    wrong, throttled = _rows(app, SIGN_IN_REFUSED)
    assert (wrong.outcome, wrong.repeats) == ("refused: wrong email or password", limit)
    assert (throttled.outcome, throttled.repeats) == ("refused: too many failed sign-ins", 30)


@pytest.fixture
def pg_app(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=emptied_postgres(),
                   DATABASE_WAIT_SECONDS="1")
    with app.app_context():
        create_user(ANA, "viewer", OLD)
    return app


def test_a_sign_in_the_trail_cannot_record_does_not_happen_postgresql(pg_app):
    """Another session holds the trail's table: a right password gets the busy page and
    no session (a sign-in the trail cannot record does not happen); a wrong one gets its
    usual answer; a sign-out still signs out. Never a 500."""
    signed_in = _signed_in(pg_app)
    lock = PostgresTableLock(with_driver(PG_URL))
    lock.take()
    try:
        client = pg_app.test_client()
        busy = client.post("/signin", data={"email": ANA, "password": OLD})
        wrong = client.post("/signin", data={"email": ANA, "password": "nope"})
        out = signed_in.post("/signout")
    finally:
        lock.release()
    assert busy.status_code == 503 and "you are not signed in" in busy.get_data(as_text=True)
    assert busy.headers["Retry-After"]
    assert wrong.status_code == 401 and "Wrong email or password." in wrong.get_data(as_text=True)
    assert out.status_code == 302 and signed_in.get("/billing").status_code == 302
    assert client.get("/billing").status_code == 302
    with pg_app.app_context():
        assert UserSession.query.count() == 0
        assert AuditEntry.query.filter_by(action=SIGNED_IN).count() == 1  # the first only


def test_a_session_keeps_the_way_it_came_in(app, ana):
    """``start_session(user, via=...)``, as the sign-in through the provider calls it:
    the record and the signed-in user both say how."""
    from flask_login import current_user

    from webapp.services.sessions import start_session

    with app.test_request_context("/signin"):
        start_session(db.session.get(User, ana), via=VIA_SSO)
        assert current_user.via == VIA_SSO
        assert UserSession.query.filter_by(user_id=ana).one().via == VIA_SSO


def test_a_copy_of_the_cookie_is_worth_nothing_after_a_password_change(app, ana):
    here = _signed_in(app)
    stolen = app.test_client()
    stolen.set_cookie("giga_session", here.get_cookie("giga_session").value)
    assert stolen.get("/billing").status_code == 200
    _change(here)
    assert stolen.get("/billing").status_code == 302  # to sign-in
    assert here.get("/billing").status_code == 200  # the person who changed it stays in


def test_switching_password_sign_in_off_ends_the_password_sessions_already_open(
        tmp_path, sandbox, oidc):
    from .conftest import sso_settings

    before = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc))
    finance, admin = before.test_client(), before.test_client()
    AuthActions(finance).login("finance")
    AuthActions(admin).login("admin")
    after = make_app(tmp_path, SANDBOX=sandbox, SECRET_KEY=before.config["SECRET_KEY"],
                     **sso_settings(oidc, PASSWORD_SIGNIN="admins"))
    cookies = {c: c.get_cookie("giga_session").value for c in (finance, admin)}
    now = {c: after.test_client() for c in (finance, admin)}
    for old, new in now.items():
        new.set_cookie("giga_session", cookies[old])
    assert now[finance].get("/billing").status_code == 302  # ended: not a local admin
    assert now[admin].get("/billing").status_code == 200  # the break-glass admin stays


def test_one_user_signing_in_and_out_over_and_over_is_one_row_a_minute_each(
        still_app, still_clock):
    app = still_app
    with app.app_context():
        create_user(ANA, "viewer", OLD)
    for _ in range(30):
        client = _signed_in(app)
        AuthActions(client).logout()
        still_clock.advance(1)  # 30 s in all: the same minute
    signed_in, = _rows(app, SIGNED_IN)
    signed_out, = _rows(app, SIGNED_OUT)
    assert signed_in.repeats == signed_out.repeats == 30
    admin = app.test_client()
    AuthActions(admin).login("admin")
    page = admin.get("/audit").get_data(as_text=True)
    assert "with password from 127.0.0.1, 30 times this minute" in page
    # sign-ins that went through are no refused attempts (the sub-line once said so)
    assert "more refused attempt" not in page
    still_clock.advance(60)  # the next minute starts rows of its own
    AuthActions(_signed_in(app)).logout()
    assert [r.repeats for r in _rows(app, SIGNED_OUT)] == [30, 1]


def test_password_changes_are_limited_per_user_before_any_costly_check(app, ana):
    client = _signed_in(app)
    pair = [OLD, NEW]
    codes = [_change(client, current=pair[i % 2], new=pair[(i + 1) % 2]).status_code
             for i in range(13)]
    assert codes == [303] * 10 + [429] * 3
    assert len(_rows(app, PASSWORD_CHANGED)) == 10
    resp = _change(client, current=pair[0], new=pair[1])
    assert "Too many password changes" in resp.get_data(as_text=True)
    assert int(resp.headers["Retry-After"]) >= 1
