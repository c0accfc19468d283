"""Every cell of the role table, as requests a person or an attacker would send."""
import pytest

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.trail import SIGNED_IN

ROLES = ("viewer", "finance", "admin")


@pytest.mark.parametrize("role", ROLES)
def test_everyone_sees_balance_plans_forecast(client, auth, role):
    auth.login(role)
    html = client.get("/billing").get_data(as_text=True)
    assert "Total balance" in html and "Run-out forecast" in html and "<h3>Pro</h3>" in html


@pytest.mark.parametrize("role,offered", [("viewer", False), ("finance", True), ("admin", True)])
def test_top_up_form_offered_only_to_those_who_may(client, auth, role, offered):
    auth.login(role)
    html = client.get("/billing").get_data(as_text=True)
    assert ('action="/billing/topup' in html) is offered


@pytest.mark.parametrize("role,offered", [("viewer", False), ("finance", False), ("admin", True)])
def test_plan_change_offered_only_to_admin(client, auth, role, offered):
    auth.login(role)
    html = client.get("/billing").get_data(as_text=True)
    assert ("/billing/plans/pro" in html) is offered
    assert (client.get("/billing/plans/pro").status_code == 200) is offered


@pytest.mark.parametrize("role,allowed", [("viewer", False), ("finance", True), ("admin", True)])
def test_forged_top_up(client, auth, sandbox, app, role, allowed):
    auth.login(role)
    resp = client.post("/billing/topup", data={"amount": "50", "nonce": "f" * 24})
    assert resp.status_code == (303 if allowed else 403)
    assert sandbox.api_calls("/api/billing/recharge") == (1 if allowed else 0)
    if not allowed:
        assert "does not allow this" in resp.get_data(as_text=True)
        with app.app_context():
            entry = AuditEntry.query.filter(AuditEntry.action != SIGNED_IN).one()
            assert (entry.outcome, entry.user_email, entry.action) == (
                "refused: role", "viewer@demo.test", "top-up")


@pytest.mark.parametrize("role,allowed", [("viewer", False), ("finance", False), ("admin", True)])
def test_forged_plan_change(client, auth, sandbox, app, role, allowed):
    auth.login(role)
    sandbox.calls.clear()
    resp = client.post("/billing/plans/pro", data={"nonce": "g" * 24})
    assert resp.status_code == (303 if allowed else 403)
    assert sandbox.api_calls("/api/billing/subscribe") == (1 if allowed else 0)
    if not allowed:
        assert sandbox.api_calls() == 0  # not even a read
        with app.app_context():
            entry = AuditEntry.query.filter(AuditEntry.action != SIGNED_IN).one()
            assert (entry.outcome, entry.plan_to, entry.user_role) == ("refused: role", "pro", role)


@pytest.mark.parametrize("role,allowed", [("viewer", False), ("finance", True), ("admin", True)])
def test_audit_trail_access(client, auth, role, allowed):
    auth.login(role)
    assert client.get("/audit").status_code == (200 if allowed else 403)
    assert client.get("/audit/export.csv").status_code == (200 if allowed else 403)
    assert ('href="/audit"' in client.get("/billing").get_data(as_text=True)) is allowed


@pytest.mark.parametrize("role,allowed", [("viewer", False), ("finance", False), ("admin", True)])
def test_user_management_access(client, auth, app, role, allowed):
    auth.login(role)
    assert client.get("/users").status_code == (200 if allowed else 403)
    resp = client.post("/users", data={"email": "new@example.com", "role": "admin",
                                       "password": "long-enough-pw"})
    assert resp.status_code == (302 if allowed else 403)
    with app.app_context():
        from webapp.models import User
        assert (User.query.filter_by(email="new@example.com").first() is not None) is allowed


@pytest.mark.parametrize("path", ["/billing", "/billing/plans/pro", "/audit", "/audit/export.csv",
                                  "/users"])
def test_anonymous_is_sent_to_sign_in(client, path):
    resp = client.get(path)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/signin")


@pytest.mark.parametrize("path,data", [("/billing/topup", {"amount": "50", "nonce": "a" * 24}),
                                       ("/billing/plans/pro", {"nonce": "a" * 24}),
                                       ("/users", {"email": "x@example.com", "role": "admin",
                                                   "password": "long-enough-pw"})])
def test_anonymous_posts_reach_nothing(client, sandbox, path, data):
    resp = client.post(path, data=data)
    assert resp.status_code == 302 and sandbox.api_calls() == 0


def test_demoted_user_loses_rights_at_once(client, auth, app, sandbox):
    auth.login("finance")
    assert client.get("/audit").status_code == 200
    with app.app_context():
        from webapp.services.users import set_role
        set_role("finance@demo.test", "viewer")
    assert client.get("/audit").status_code == 403
    resp = client.post("/billing/topup", data={"amount": "50", "nonce": "h" * 24})
    assert resp.status_code == 403 and sandbox.api_calls("/api/billing/recharge") == 0


def test_admin_manages_users_from_the_page(client, auth, app):
    auth.login("admin")
    client.post("/users", data={"email": "Pat@Example.com", "role": "viewer",
                                "password": "long-enough-pw"})
    with app.app_context():
        from webapp.models import User
        pat = User.query.filter_by(email="pat@example.com").one()
        pat_id = pat.id
    assert "pat@example.com" in client.get("/users").get_data(as_text=True)
    client.post(f"/users/{pat_id}/role", data={f"u{pat_id}-role": "finance"})
    with app.app_context():
        assert db.session.get(User, pat_id).role == "finance"
    client.post(f"/users/{pat_id}/delete", data={"confirm": "pat@example.com"})
    with app.app_context():
        assert db.session.get(User, pat_id) is None
    dup = client.post("/users", data={"email": "viewer@demo.test", "role": "viewer",
                                      "password": "long-enough-pw"})
    assert dup.status_code == 422 and "already exists" in dup.get_data(as_text=True)


def test_admin_cannot_lock_themselves_out(client, auth, app):
    auth.login("admin")
    with app.app_context():
        from webapp.models import User
        me = User.query.filter_by(email="admin@demo.test").one().id
    client.post(f"/users/{me}/role", data={f"u{me}-role": "viewer"})
    client.post(f"/users/{me}/delete")
    with app.app_context():
        assert db.session.get(User, me).role == "admin"
