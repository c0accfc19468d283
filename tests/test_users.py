"""Changes to users: one password rule for the page and the CLI, removal asks first,
the last admin stays, and every change is on the audit trail."""
import csv
import io

import pytest

from webapp.models import AuditEntry, User

STRONG = "violet-anchor-meadow-42"


def _user(app, email):
    with app.app_context():
        return User.query.filter_by(email=email).one_or_none()


def _audit(app, action):
    with app.app_context():
        return [(e.user_email, e.user_role, e.subject, e.role_from, e.role_to, e.outcome)
                for e in AuditEntry.query.filter_by(action=action).order_by(AuditEntry.id)]


@pytest.mark.parametrize("password,why", [
    (" " * 12, "cannot be blank"),
    ("", "cannot be blank"),
    ("short-pw", "at least 12 characters"),
    ("12345678", "at least 12 characters"),
    ("password1234", "too common or easy to guess"),
    ("qwertyuiopasdf", "too common or easy to guess"),
    ("aaaaaaaaaaaaaaaa", "too common or easy to guess"),
])
def test_one_password_rule_for_the_page_and_the_cli(client, auth, runner, app, password, why):
    auth.login("admin")
    page = client.post("/users", data={"email": "weak@example.com", "role": "admin",
                                       "password": password})
    assert page.status_code == 422 and why in page.get_data(as_text=True)
    cli = runner.invoke(args=["users", "create", "weak@example.com", "--role", "admin",
                              "--password", password])
    assert cli.exit_code == 1 and why in cli.output
    assert _user(app, "weak@example.com") is None


def test_a_strong_password_is_accepted_and_signs_in(client, auth, runner, app):
    assert runner.invoke(args=["users", "create", "ok@example.com", "--role", "viewer",
                               "--password", STRONG]).exit_code == 0
    resp = client.post("/signin", data={"email": "ok@example.com", "password": STRONG})
    assert resp.status_code == 302


def test_user_changes_are_on_the_audit_trail(client, auth, runner, app):
    auth.login("admin")
    client.post("/users", data={"email": "pat@example.com", "role": "viewer", "password": STRONG})
    pat = _user(app, "pat@example.com").id
    changed = client.post(f"/users/{pat}/role", data={f"u{pat}-role": "finance"},
                          follow_redirects=True).get_data(as_text=True)
    assert "pat@example.com is now finance (was viewer)." in changed
    removed = client.post(f"/users/{pat}/delete", data={"confirm": "pat@example.com"},
                          follow_redirects=True).get_data(as_text=True)
    assert "Removed pat@example.com." in removed
    runner.invoke(args=["users", "set-role", "viewer@demo.test", "finance"])
    assert _audit(app, "user added") == [("admin@demo.test", "admin", "pat@example.com", None,
                                          "viewer", "done")]
    assert _audit(app, "role changed") == [
        ("admin@demo.test", "admin", "pat@example.com", "viewer", "finance", "done"),
        ("(command line)", "cli", "viewer@demo.test", "viewer", "finance", "done")]
    assert _audit(app, "user removed") == [("admin@demo.test", "admin", "pat@example.com",
                                            "finance", None, "done")]
    page = client.get("/audit?action=role+changed").get_data(as_text=True)
    assert "pat@example.com: viewer → finance" in page and "(command line)" in page
    assert "Top-up" not in page.split("<tbody>")[1]
    rows = list(csv.DictReader(io.StringIO(
        client.get("/audit/export.csv?action=user+removed").get_data(as_text=True))))
    assert [(r["user changed"], r["role from"]) for r in rows] == [("pat@example.com",
                                                                     "finance")]


def test_removing_a_user_asks_first(client, auth, app):
    auth.login("admin")
    viewer = _user(app, "viewer@demo.test").id
    listing = client.get("/users").get_data(as_text=True)
    assert f'href="/users/{viewer}/delete"' in listing  # a link to a question, not a button
    question = client.get(f"/users/{viewer}/delete").get_data(as_text=True)
    assert "Remove viewer@demo.test?" in question and "signed out everywhere" in question
    for data in ({}, {"confirm": "finance@demo.test"}):  # unconfirmed, or for someone else
        resp = client.post(f"/users/{viewer}/delete", data=data)
        assert resp.status_code == 303 and resp.location == f"/users/{viewer}/delete"
    assert _user(app, "viewer@demo.test") is not None
    done = client.post(f"/users/{viewer}/delete", data={"confirm": "viewer@demo.test"},
                       follow_redirects=True)
    assert done.status_code == 200 and "Removed viewer@demo.test." in done.get_data(as_text=True)
    assert _user(app, "viewer@demo.test") is None


def test_the_last_admin_can_be_neither_demoted_nor_removed(client, auth, runner, app):
    for args in (["users", "set-role", "admin@demo.test", "finance"],
                 ["users", "delete", "admin@demo.test"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and "last admin" in result.output
    assert _user(app, "admin@demo.test").role == "admin"
    # with a second admin, either may go, but not both
    runner.invoke(args=["users", "create", "boss@example.com", "--role", "admin",
                        "--password", STRONG])
    assert runner.invoke(args=["users", "set-role", "admin@demo.test", "viewer"]).exit_code == 0
    assert runner.invoke(args=["users", "delete", "boss@example.com"]).exit_code == 1
    assert _audit(app, "user removed") == []


def test_two_admins_demoting_each_other_at_once_leave_one(app, runner):
    """The guard is part of the UPDATE itself, so SQLite's one writer at a time keeps it."""
    from .support.races import demote_each_other
    runner.invoke(args=["users", "create", "second@example.com", "--role", "admin",
                        "--password", STRONG])
    assert demote_each_other(app, "admin@demo.test", "second@example.com") == \
        ["demoted", "refused"]
    with app.app_context():
        assert User.query.filter_by(role="admin").count() == 1
