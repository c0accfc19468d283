"""The audit trail after real actions against the sandbox, its filters and its CSV."""
import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.trail import SIGN_IN_REFUSED, SIGNED_IN, SIGNED_OUT

from .conftest import AuthActions

#: the rows signing in and out leave (tests/test_account_basics.py is about them)
SIGN_INS = (SIGNED_IN, SIGNED_OUT, SIGN_IN_REFUSED)


def _actions():
    """The trail's rows but those of signing in and out."""
    return AuditEntry.query.filter(AuditEntry.action.not_in(SIGN_INS))


def _csv(client, query=""):
    """The CSV's header and its rows but those of signing in and out."""
    rows = list(csv.reader(io.StringIO(client.get(f"/audit/export.csv{query}")
                                       .get_data(as_text=True))))
    return rows[:1] + [r for r in rows[1:] if r[3] not in SIGN_INS]


def _rows(app):
    with app.app_context():
        return [(e.action, e.user_email, e.user_role, e.amount, e.plan_from, e.plan_to, e.outcome,
                 e.request_id) for e in
                _actions().order_by(AuditEntry.id).all()]


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
        entry = _actions().one()
        assert entry.checkout_url == resp.headers["Location"]


def test_no_checkout_when_the_record_cannot_be_written(client, auth, app, sandbox):
    auth.login("finance")
    with app.app_context():
        db.session.execute(db.text("DROP TABLE audit_entries"))
        db.session.commit()
    resp = client.post("/billing/topup", data={"amount": "30", "nonce": "f" * 24})
    # the store is at fault, not the user's request: a 503 that says nothing was sent
    assert resp.status_code == 503 and "Location" not in resp.headers
    assert resp.headers["Retry-After"] == "5"
    text = resp.get_data(as_text=True)
    assert "could not put this attempt on its audit trail" in text
    assert "did not send anything to checkout" in text
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
    rows = _csv(client)
    assert rows[0][:5] == ["time (UTC)", "email", "role", "action", "amount (USD)"]
    assert len(rows) == 4
    col = {name: i for i, name in enumerate(rows[0])}
    newest = rows[1]
    assert newest[1] == "'=cmd|'/C calc'!A0"   # cannot run as a formula
    assert newest[4] == "1234.50"               # a plain decimal, no $ or comma
    assert newest[col["detail"]] == "'@SUM(A1:A9)"
    assert rows[2][col["request id"]] == "req-9"
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


def test_a_refused_top_up_keeps_the_amount_as_typed(client, auth, app):
    auth.login("finance")
    typed = "=HYPERLINK(\"http://evil\")<script>" + "9" * 60
    client.post("/billing/topup", data={"amount": typed, "nonce": "t" * 24})
    client.post("/billing/topup", data={"amount": "  12.345 ", "nonce": "u" * 24})
    with app.app_context():
        kept = [e.amount_typed for e in _actions().order_by(AuditEntry.id)]
    assert kept == [typed[:40], "12.345"]
    page = client.get("/audit").get_data(as_text=True)
    assert "typed “12.345”" in page and "<script>" not in page and "&lt;script&gt;" in page
    header, *rows = _csv(client)
    assert {r[header.index("amount typed")] for r in rows} == {"12.345", "'" + typed[:40]}


def test_a_viewer_refused_by_role_is_recorded_with_what_they_typed(client, auth, app):
    auth.login("viewer")
    assert client.post("/billing/topup", data={"amount": "777", "nonce": "v" * 24}).status_code == 403
    with app.app_context():
        entry = _actions().one()
    assert (entry.outcome, entry.amount_typed) == ("refused: role", "777")


def test_the_page_shows_plan_names_and_the_csv_keeps_ids_and_names(client, auth, app, sandbox):
    auth.login("admin")
    client.get("/billing")
    client.post("/billing/plans/pro", data={"nonce": "p" * 24})
    client.post("/billing/plans/max", data={"nonce": "q" * 24})
    page = client.get("/audit").get_data(as_text=True)
    assert "Starter Pro → Pro" in page and "→ Max" in page and "starter-pro →" not in page
    rows = list(csv.DictReader(io.StringIO(client.get("/audit/export.csv").get_data(as_text=True))))
    sent = next(r for r in rows if r["outcome"] == "sent to checkout")
    assert (sent["plan from"], sent["plan from name"], sent["plan to"], sent["plan to name"]) == \
        ("starter-pro", "Starter Pro", "pro", "Pro")


def test_refusals_past_the_limit_are_429_and_one_row_a_minute(still_app, sandbox):
    """A viewer cannot bury a real top-up under refused posts."""
    app = still_app
    client = app.test_client()
    auth = AuthActions(client)
    finance = app.test_client()
    finance.post("/signin", data={"email": "finance@demo.test", "password": "demo"})
    finance.post("/billing/topup", data={"amount": "777", "nonce": "r" * 24})
    auth.login("viewer")
    codes = [client.post("/billing/topup", data={"amount": str(i), "nonce": f"{i:024d}"})
             .status_code for i in range(40)]
    assert codes[:5] == [403] * 5 and set(codes[5:]) == {429}
    with app.app_context():
        rows = _actions().filter_by(user_email="viewer@demo.test").all()
    assert len(rows) == 6  # five refusals, then one row for the rest of the minute
    summary = next(r for r in rows if r.action == "refused attempts")
    assert summary.repeats == 35 and summary.outcome == "refused: too many attempts"
    page = finance.get("/audit").get_data(as_text=True)
    assert "$777.00" in page and "35 more refused attempts this minute" in page
    assert sandbox.api_calls("/api/billing/recharge") == 1


def test_the_trail_reaches_every_entry_by_page_and_by_user(client, auth, app):
    now = datetime.now(timezone.utc)
    with app.app_context():
        db.session.add_all([AuditEntry(at=now - timedelta(seconds=i), user_email="noisy@x.com",
                                       user_role="viewer", action="top-up", outcome="refused: role")
                            for i in range(130)])
        db.session.add(AuditEntry(at=now - timedelta(seconds=200), user_email="f@x.com",
                                  user_role="finance", action="top-up",
                                  amount=Decimal("777.00"), outcome="sent to checkout"))
        db.session.commit()
    auth.login("finance")
    first = client.get("/audit").get_data(as_text=True)
    # and the row of finance's sign-in, the newest
    assert "132 entries · page 1 of 3" in first and "$777.00" not in first
    last = client.get("/audit?page=3").get_data(as_text=True)
    assert "$777.00" in last and 'rel="prev"' in last
    assert "$777.00" in client.get("/audit?user=F@X.com").get_data(as_text=True)
    assert "1 entry" in client.get("/audit?user=f@x.com&action=top-up").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(client.get("/audit/export.csv").get_data(as_text=True))))
    assert len(rows) == 133  # every row, however many


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01", "from=1999-12-31",
                                   "to=2100-01-01", "from=2026-13-40", "page=-1", "page=zz"])
def test_odd_dates_are_a_field_error_not_a_crash(client, auth, app, query):
    _seed(app)
    auth.login("finance")
    resp = client.get(f"/audit?{query}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    if "page" not in query:
        assert 'class="field-error"' in html
    assert "$1,234.50" in html  # the bad filter is left out, the rest still shows
    assert client.get(f"/audit/export.csv?{query}").status_code == 200


def test_two_processes_on_one_redis_share_the_refusal_limit_and_summary_row(tmp_path, sandbox,
                                                                             redis_server,
                                                                             still_clock):
    from webapp.gateway.redis_store import RedisStore
    from .conftest import make_app
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    apps = [make_app(tmp_path / str(i), SANDBOX=sandbox, STORE=RedisStore(redis_server.url),
                     DATABASE_URL=shared, CLOCK=still_clock) for i in range(2)]
    clients = [app.test_client() for app in apps]
    for client in clients:
        AuthActions(client).login("viewer")
    codes = [clients[i % 2].post("/billing/topup", data={"amount": "9", "nonce": f"{i:024d}"})
             .status_code for i in range(20)]
    assert codes.count(403) == 5 and codes.count(429) == 15  # one limit for both processes
    with apps[0].app_context():
        rows = _actions().filter_by(user_email="viewer@demo.test").all()
    assert len(rows) == 6 and [r.repeats for r in rows if r.repeats] == [15]


def test_actions_keep_their_capitals_on_the_page_and_in_the_filter(client, auth):
    """"API token created", not "Api token created" (Jinja's ``capitalize`` lowers the
    rest of the words)."""
    auth.login("finance")
    assert client.post("/settings/tokens", data={"name": "month-end", "scopes": ["usage:read"],
                                                 "days": "7"}).status_code == 201
    page = client.get("/audit").get_data(as_text=True)
    assert '<td data-label="Action">API token created</td>' in page
    assert '<option value="SSO linked">SSO linked</option>' in page
    assert "Api token" not in page and "Sso" not in page
