"""The audit trail after real actions against the sandbox, its filters and its CSV."""
import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal


from webapp.extensions import db
from webapp.models import AuditEntry


def _rows(app):
    with app.app_context():
        return [(e.action, e.user_email, e.user_role, e.amount, e.plan_from, e.plan_to, e.outcome,
                 e.request_id) for e in
                AuditEntry.query.order_by(AuditEntry.id).all()]


def test_actions_are_recorded_with_outcome_and_request_id(client, auth, app, sandbox):
    auth.login("admin")
    client.post("/billing/topup", data={"amount": "12.34", "nonce": "a" * 24})
    client.post("/billing/topup", data={"amount": "1e3", "nonce": "b" * 24})
    client.post("/billing/plans/pro", data={"nonce": "c" * 24})
    rows = _rows(app)
    assert rows[0][:7] == ("top-up", "admin@demo.test", "admin", Decimal("12.34"), None, None,
                           "sent to checkout")
    assert rows[0][7]  # the sandbox's request id
    assert rows[1][0] == "top-up" and rows[1][6] == "refused: invalid input"
    assert rows[2][:7] == ("plan change", "admin@demo.test", "admin", None, "starter-pro", "pro",
                           "sent to checkout")


def test_upstream_error_is_recorded_with_its_code(client, auth, app, sandbox):
    auth.login("admin")
    sandbox.outage = True
    resp = client.post("/billing/topup", data={"amount": "20", "nonce": "d" * 24})
    assert resp.status_code == 502
    html = resp.get_data(as_text=True)
    row = _rows(app)[0]
    assert row[6] == "upstream error: INTERNAL_ERROR" and row[7] in html


def test_the_record_is_written_before_the_redirect(client, auth, app, sandbox):
    auth.login("finance")
    resp = client.post("/billing/topup", data={"amount": "30", "nonce": "e" * 24})
    with app.app_context():
        entry = AuditEntry.query.one()
        assert entry.checkout_url == resp.headers["Location"]


def test_no_checkout_when_the_record_cannot_be_written(client, auth, app, sandbox):
    auth.login("finance")
    with app.app_context():
        db.session.execute(db.text("DROP TABLE audit_entries"))
        db.session.commit()
    resp = client.post("/billing/topup", data={"amount": "30", "nonce": "f" * 24})
    assert resp.status_code == 500 and "Location" not in resp.headers
    assert "could not record" in resp.get_data(as_text=True)
    assert sandbox.api_calls("/api/billing/recharge") == 0


def _seed(app):
    now = datetime.now(timezone.utc)
    with app.app_context():
        db.session.add_all([
            AuditEntry(at=now - timedelta(days=3), user_email="f@x.com", user_role="finance",
                       action="top-up", amount=Decimal("10.00"), outcome="sent to checkout"),
            AuditEntry(at=now - timedelta(days=1), user_email="a@x.com", user_role="admin",
                       action="plan change", plan_from="free", plan_to="pro",
                       outcome="upstream error: INTERNAL_ERROR", request_id="req-9"),
            AuditEntry(at=now, user_email="=cmd|'/C calc'!A0", user_role="finance",
                       action="top-up", amount=Decimal("1234.50"), outcome="sent to checkout",
                       detail="@SUM(A1:A9)"),
        ])
        db.session.commit()
    return now


def test_trail_is_newest_first_and_filterable(client, auth, app):
    now = _seed(app)
    auth.login("finance")
    html = client.get("/audit").get_data(as_text=True)
    assert html.index("$1,234.50") < html.index("free → pro") < html.index("$10.00")
    only_plan = client.get("/audit?action=plan+change").get_data(as_text=True)
    assert "free → pro" in only_plan and "$10.00" not in only_plan
    day = (now - timedelta(days=1)).date().isoformat()
    ranged = client.get(f"/audit?from={day}&to={day}").get_data(as_text=True)
    assert "req-9" in ranged and "$10.00" not in ranged and "$1,234.50" not in ranged
    bad = client.get("/audit?from=yesterday").get_data(as_text=True)
    assert "is not a date" in bad


def test_csv_export_is_safe_and_plain(client, auth, app):
    _seed(app)
    auth.login("admin")
    resp = client.get("/audit/export.csv")
    assert resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert rows[0][:5] == ["time (UTC)", "email", "role", "action", "amount (USD)"]
    assert len(rows) == 4
    newest = rows[1]
    assert newest[1] == "'=cmd|'/C calc'!A0"   # cannot run as a formula
    assert newest[4] == "1234.50"               # a plain decimal, no $ or comma
    assert newest[9] == "'@SUM(A1:A9)"
    assert rows[2][8] == "req-9"
    for row in rows[1:]:
        for cell in row:
            assert not cell[:1] in ("=", "+", "-", "@")


def test_csv_follows_the_filters(client, auth, app):
    _seed(app)
    auth.login("finance")
    rows = list(csv.reader(io.StringIO(
        client.get("/audit/export.csv?action=plan+change").get_data(as_text=True))))
    assert len(rows) == 2 and rows[1][3] == "plan change"


def test_plan_change_refusals_are_recorded(client, auth, app, sandbox):
    auth.login("admin")
    client.post("/billing/plans/max", data={"nonce": "m" * 24})
    client.post("/billing/plans/starter-pro", data={"nonce": "s" * 24})
    sandbox.outage = True
    client.post("/billing/plans/pro", data={"nonce": "o" * 24})
    outcomes = [(r[5], r[6]) for r in _rows(app)]
    assert outcomes == [("max", "refused: contact sales"),
                        ("starter-pro", "refused: already on this plan"),
                        ("pro", "upstream error: INTERNAL_ERROR")]
    # refusals reach nothing; the last one was tried once and failed upstream
    assert sandbox.api_calls("/api/billing/subscribe") == 1
