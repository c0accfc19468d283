"""The read-only JSON API, as a finance script meets it: tokens made on the settings page
or with ``flask tokens``, shown once and kept only as an HMAC; every endpoint for every
role, personal and team tokens; refusals as JSON; pages through an opaque cursor that
add up to the page's figures; CSV with the formula guard; limits; and no upstream call,
ever."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event, select
from werkzeug.serving import make_server

from webapp.clock import FrozenClock
from webapp.extensions import db
from webapp.models import ApiToken, AuditEntry, BalanceSnapshot
from webapp.services import trail
from webapp.services.history.report import chart
from webapp.services.tokens import parse
from webapp.services.users import create_user, delete_user, set_role
from webapp.services.zone import display_zone

from .conftest import AuthActions, make_app

ENDPOINTS = {"/api/v1/balance": "balance:read", "/api/v1/balance/history": "balance:read",
             "/api/v1/usage/daily": "usage:read", "/api/v1/usage/hourly": "usage:read",
             "/api/v1/checkouts": "audit:read", "/api/v1/audit": "audit:read"}
ALL = ("balance:read", "usage:read", "audit:read")
ROLE_SCOPES = {"viewer": ("balance:read", "usage:read"), "finance": ALL, "admin": ALL}


def _make(client, role, scopes, *, team=False, days="30", name="script"):
    """Sign in as ``role`` and make a token on the settings page; its text."""
    AuthActions(client).login(role)
    answer = client.post("/settings/tokens", data={
        "name": name, "scopes": list(scopes), "days": days, **({"team": "y"} if team else {})})
    assert answer.status_code == 201, answer.get_data(as_text=True)[:500]
    client.post("/signout")
    return re.search(r'value="(wgb_[^"]+)"', answer.get_data(as_text=True)).group(1)


def _get(client, path, token, **headers):
    return client.get(path, headers={"Authorization": f"Bearer {token}", **headers})


# -- tokens ----------------------------------------------------------------------------

def test_a_token_is_shown_once_and_kept_only_as_an_hmac(app, client, caplog):
    token = _make(client, "finance", ["balance:read"])
    public_id, secret = parse(token)
    AuthActions(client).login("finance")
    listing = client.get("/settings/tokens").get_data(as_text=True)
    assert token not in listing and secret not in listing
    assert f"wgb_{public_id[:4]}…{token[-2:]}" in listing  # listed as wgb_ab12…x9
    with app.app_context():
        db.session.execute(db.text("PRAGMA wal_checkpoint(TRUNCATE)"))
    dump = b"".join(p.read_bytes() for p in Path(app.instance_path).glob("test.db*"))
    assert public_id.encode() in dump and secret.encode() not in dump
    assert secret not in caplog.text


def test_the_new_token_page_is_never_stored(client):
    AuthActions(client).login("viewer")
    answer = client.post("/settings/tokens", data={"name": "n", "scopes": ["usage:read"],
                                                   "days": "7"})
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    assert "shown only this once" in answer.get_data(as_text=True)


@pytest.mark.parametrize("data,status,words", [
    ({"name": "", "scopes": ["usage:read"], "days": "30"}, 422, "Give the token a name"),
    ({"name": "n", "scopes": [], "days": "30"}, 422, "Choose at least one"),
    ({"name": "n", "scopes": ["audit:read"], "days": "30"}, 422, "A viewer cannot read audit:read"),
    ({"name": "n", "scopes": ["usage:read"], "days": "31"}, 422, "Not a valid choice"),
    ({"name": "n", "scopes": ["usage:read"], "days": "30", "team": "y"}, 403,
     "Only an admin can make a team token"),
])
def test_what_a_token_may_be_is_checked_by_the_field(client, data, status, words):
    AuthActions(client).login("viewer")
    answer = client.post("/settings/tokens", data=data)
    assert answer.status_code == status and words in answer.get_data(as_text=True)
    assert "wgb_" not in answer.get_data(as_text=True)


def test_a_typo_is_refused_without_a_database_read(app, client):
    token = _make(client, "viewer", ["balance:read"])
    typo = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    statements = []
    with app.app_context():
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            answer = _get(client, "/api/v1/balance", typo)
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
    assert answer.status_code == 401 and answer.json["error"]["type"] == "invalid_token"
    assert statements == []


# -- every role, personal and team, every endpoint ---------------------------------------

@pytest.mark.parametrize("role,team", [("viewer", False), ("finance", False),
                                       ("admin", False), ("admin", True)],
                         ids=["viewer", "finance", "admin", "team"])  # only admins make team ones
def test_the_matrix_of_roles_tokens_scopes_and_endpoints(app, client, seeded, sandbox, role,
                                                         team):
    AuthActions(client).login(role)
    client.get("/billing")  # the dashboard reads the balance once, as a visit would
    client.post("/signout")
    calls = len(sandbox.calls)
    every = _make(client, role, ROLE_SCOPES[role], team=team)
    narrow = {s: _make(client, role, [s], team=team, name=s) for s in ROLE_SCOPES[role]}
    for path, scope in ENDPOINTS.items():
        answer = _get(client, path, every)
        if scope not in ROLE_SCOPES[role]:  # a viewer's token never carries audit:read
            assert answer.status_code == 403 and scope in answer.json["error"]["message"]
            continue
        assert answer.status_code == 200, (path, answer.json)
        assert answer.is_json and answer.headers["X-RateLimit-Limit"] == "60"
        assert client.get(path).status_code == 401
        assert _get(client, path, narrow[scope]).status_code == 200
        for other in (s for s in ROLE_SCOPES[role] if s != scope):
            refused = _get(client, path, narrow[other])
            assert refused.status_code == 403 and refused.json["error"] == {
                "type": "insufficient_scope", "message": refused.json["error"]["message"]}
            assert scope in refused.json["error"]["message"] and refused.json["request_id"]
    assert len(sandbox.calls) == calls  # not one call upstream


def test_a_demoted_owner_loses_the_scope_on_the_next_request(app, client, seeded):
    token = _make(client, "finance", ALL)
    assert _get(client, "/api/v1/audit", token).status_code == 200
    with app.app_context():
        set_role("finance@demo.test", "viewer", actor=trail.COMMAND_LINE)
    refused = _get(client, "/api/v1/audit", token)
    assert refused.status_code == 403 and "now viewer" in refused.json["error"]["message"]
    assert _get(client, "/api/v1/usage/daily", token).status_code == 200
    with app.app_context():
        delete_user("finance@demo.test", actor=trail.COMMAND_LINE)
        create_user("finance@demo.test", "finance", "correct-horse-battery-staple")
    gone = _get(client, "/api/v1/usage/daily", token)
    assert gone.status_code == 401 and gone.json["error"]["type"] == "invalid_token"
    assert "no longer has access" in gone.json["error"]["message"]


def test_a_team_token_outlives_the_admin_who_made_it(app, client, seeded):
    with app.app_context():
        create_user("second@demo.test", "admin", "correct-horse-battery-staple")
    token = _make(client, "admin", ALL, team=True)
    with app.app_context():
        delete_user("admin@demo.test", actor=trail.COMMAND_LINE)
    assert _get(client, "/api/v1/audit", token).status_code == 200


def test_revoked_and_expired_tokens_are_refused_and_the_trail_stays_short(tmp_path, sandbox):
    clock = FrozenClock()
    # the address's own limit stops a flood sooner; here the trail's bound is on trial
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, API_FAILURES_PER_MINUTE="100")
    client = app.test_client()
    token = _make(client, "viewer", ["usage:read"])
    later = _make(client, "viewer", ["usage:read"], name="later")
    AuthActions(client).login("admin")
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.name == "script"))
    client.post(f"/settings/tokens/{row.id}/revoke")
    client.post("/signout")
    for _ in range(30):
        refused = _get(client, "/api/v1/tokens/self", token)
    assert refused.status_code == 401 and refused.json["error"]["type"] == "token_revoked"
    clock.advance(24 * 86400)  # a week before it expires: the page says so
    AuthActions(client).login("viewer")
    assert "Expires within 7 days" in client.get("/settings/tokens").get_data(as_text=True)
    client.post("/signout")
    clock.advance(6 * 86400 - 60)  # a minute before it expires
    assert _get(client, "/api/v1/tokens/self", later).status_code == 200
    clock.advance(60)
    expired = _get(client, "/api/v1/tokens/self", later)
    assert expired.status_code == 401 and expired.json["error"]["type"] == "token_expired"
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(
            AuditEntry.action.like("API token%")).order_by(AuditEntry.id)).all()
    assert [(r.action, r.user_email, r.repeats) for r in rows] == [
        ("API token created", "viewer@demo.test", None),
        ("API token created", "viewer@demo.test", None),
        ("API token revoked", "admin@demo.test", None),
        ("API token refused", "viewer@demo.test", 30),  # 30 refusals, one row
        ("API token refused", "viewer@demo.test", 1)]
    assert "wgb_" in rows[0].detail and "viewer@demo.test" in rows[0].detail


def test_a_viewer_cannot_revoke_anothers_token(app, client):
    _make(client, "finance", ["usage:read"])
    with app.app_context():
        row = db.session.scalar(select(ApiToken))
    AuthActions(client).login("viewer")
    client.post(f"/settings/tokens/{row.id}/revoke")
    with app.app_context():
        assert db.session.get(ApiToken, row.id).revoked_at is None


def test_last_use_is_written_at_most_once_a_minute(tmp_path, sandbox):
    clock = FrozenClock()
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, API_REQUESTS_PER_MINUTE="2000",
                   API_REQUESTS_PER_HOUR="5000")
    client = app.test_client()
    token = _make(client, "viewer", ["usage:read"])
    writes = []
    with app.app_context():
        listen = lambda *a: writes.append(a[2]) if a[2].startswith("UPDATE api_tokens") \
            else None  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        first = clock.now()
        for i in range(1000):
            assert _get(client, "/api/v1/tokens/self", token).status_code == 200
            if i % 100 == 99:
                clock.advance(5)  # 1,000 requests over 50 seconds
        assert len(writes) == 1  # the first request's
        clock.advance(11)
        _get(client, "/api/v1/tokens/self", token)
        event.remove(db.engine, "before_cursor_execute", listen)
        row = db.session.scalar(select(ApiToken))
    assert len(writes) == 2 and row.last_used_at == first + timedelta(seconds=61)
    assert row.last_used_address == "127.0.0.1"


# -- answers -------------------------------------------------------------------------------

def test_balance_says_how_old_it_is_and_never_calls_upstream(app, client, sandbox):
    token = _make(client, "viewer", ["balance:read"])
    empty = _get(client, "/api/v1/balance", token)
    assert empty.status_code == 503 and empty.json["error"]["type"] == "no_reading"
    AuthActions(client).login("viewer")
    client.get("/billing")
    calls = len(sandbox.calls)
    answer = _get(client, "/api/v1/balance", token)
    assert len(sandbox.calls) == calls and answer.status_code == 200
    body = answer.json
    billing = sandbox.state.billing()
    assert Decimal(body["total"]) == Decimal(str(billing["totalBalance"]))
    assert set(body["pools"]) == {"plan_credits", "prepaid"}
    assert all(isinstance(v, str) for v in (body["total"], *body["pools"].values()))
    assert body["read_at"].endswith("Z") and body["stale"] is False
    assert body["plan"]["id"] == billing["plan"] and body["age_seconds"] < 60
    assert "Set-Cookie" not in answer.headers


def test_usage_pages_add_up_to_the_page(app, client, seeded, sandbox):
    token = _make(client, "finance", ["usage:read"])
    AuthActions(client).login("finance")
    page_csv = list(csv.reader(io.StringIO(
        client.get("/billing/usage.csv?range=30").get_data(as_text=True))))
    client.post("/signout")
    days, gaps, url = [], [], "/api/v1/usage/daily?limit=4"
    while url:
        body = _get(client, url, token).json
        days += body["data"]
        gaps += body["stretches_without_readings"]
        url = body["next_page"] and f"/api/v1/usage/daily?limit=4&next_page={body['next_page']}"
        assert body["has_more"] == bool(url)
    assert len(days) == 30 and len({d["date"] for d in days}) == 30
    assert days[-1]["incomplete"] and not any(d["incomplete"] for d in days[:-1])
    page_days = {r[0]: r[2] for r in page_csv[1:] if r[6] != "no readings" and r[1] == ""}
    for d in days:
        if d["date"] in page_days:
            assert Decimal(d["usage"]).quantize(Decimal("0.01")) == Decimal(page_days[d["date"]])
    total = sum(Decimal(d["usage"]) for d in days if d["usage"]) + \
        sum(Decimal(g["usage"]) for g in gaps if g["usage"])
    with app.app_context(), app.test_request_context():
        from webapp.services.account import known_plans
        from webapp.services.balance import known_balance
        known = known_balance()
        report = chart("30", known.billing, app.extensions["clock"].now(), known_plans(),
                       read_at=known.read_at, zone=display_zone())
    assert total == report.total and total > 0
    as_csv = _get(client, "/api/v1/usage/daily?format=csv", token)
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert as_csv.mimetype == "text/csv"
    assert sum(Decimal(r["usage"]) for r in rows if r["usage"]) == total


def test_usage_says_what_drew_plan_credits_and_what_drew_prepaid(app, client, sandbox):
    """By the contract, usage draws plan credits first: $2.00 of plan credits left, then
    $5.00 used ($2.00 plan, $3.00 prepaid), then $1.00 more (prepaid). Each day and hour
    says both parts, and they add up to its usage."""
    from webapp.giga.client import parse_billing
    from webapp.services.history.readings import record

    billing = parse_billing({"billing": sandbox.state.billing()})
    t = datetime.now(timezone.utc).replace(hour=10, minute=0, second=0, microsecond=0) \
        - timedelta(days=1)
    with app.app_context():
        db.session.query(BalanceSnapshot).delete()
        db.session.commit()
        for hours, plan, prepaid in ((0, "2.00", "50"), (1, "0", "47"), (2, "0", "46")):
            reading = billing.__class__(**{**billing.__dict__,
                                           "plan_credits_remaining": Decimal(plan),
                                           "prepaid_balance": Decimal(prepaid),
                                           "total_balance": Decimal(plan) + Decimal(prepaid)})
            record(reading, t + timedelta(hours=hours), keep_days=400)
        record(reading, datetime.now(timezone.utc), keep_days=400)  # the quarter hours close
    token = _make(client, "viewer", ["usage:read"])
    starts = t.replace(hour=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    ends = (t.replace(hour=0) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    [day] = _get(client, f"/api/v1/usage/daily?starting_at={t.date()}&ending_at={t.date()}",
                 token).json["data"]
    assert (day["usage"], day["plan_credits_used"], day["prepaid_used"]) == \
        ("6.00", "2.00", "4.00")
    hours = _get(client, f"/api/v1/usage/hourly?starting_at={starts}&ending_at={ends}"
                 "&limit=24", token).json["data"]
    used = [(h["usage"], h["plan_credits_used"], h["prepaid_used"]) for h in hours
            if h["usage"] and Decimal(h["usage"])]
    assert used == [("5.00", "2.00", "3.00"), ("1.00", "0.00", "1.00")]


def test_hours_add_up_to_their_day(app, client, seeded):
    token = _make(client, "viewer", ["usage:read"])
    daily = _get(client, "/api/v1/usage/daily?limit=400", token).json["data"]
    day = next(d for d in daily[:-1] if d["usage"] and Decimal(d["usage"]) > 0)
    hours, url = [], f"/api/v1/usage/hourly?starting_at={day['starts_at']}&ending_at=" \
                     f"{day['ends_at']}&limit=5"
    while url:
        body = _get(client, url, token).json
        assert body["zone"] == "UTC"
        hours += body["data"]
        url = body["next_page"] and f"/api/v1/usage/hourly?starting_at={day['starts_at']}" \
                                    f"&ending_at={day['ends_at']}&next_page={body['next_page']}"
    assert len(hours) == 24
    assert sum(Decimal(h["usage"]) for h in hours if h["usage"]) == Decimal(day["usage"])


def test_history_pages_return_each_reading_once(app, client, seeded):
    token = _make(client, "viewer", ["balance:read"])
    seen, url = [], "/api/v1/balance/history?limit=25"
    while url:
        body = _get(client, url, token).json
        seen += body["data"]
        url = body["next_page"] and f"/api/v1/balance/history?limit=25&next_page=" \
                                    f"{body['next_page']}"
    with app.app_context():
        from webapp.models import BalanceSnapshot
        count = db.session.query(BalanceSnapshot).count()
    assert len(seen) == count == len({r["first_seen_at"] for r in seen}) > 25
    assert seen == sorted(seen, key=lambda r: r["first_seen_at"])


def test_checkouts_carry_their_reconciled_status(client, seeded):
    token = _make(client, "finance", ["audit:read"])
    body = _get(client, "/api/v1/checkouts", token).json
    assert [(c["action"], c["amount"], c["status"]) for c in body["data"]] == [
        ("top-up", "30.00", "credited")]


def test_the_audit_csv_has_the_pages_formula_guard(app, client):
    token = _make(client, "admin", ["audit:read"])
    with app.app_context():
        trail.record(trail.USER_ADDED, "=HYPERLINK(\"http://evil\")", actor=trail.COMMAND_LINE,
                     subject="+1@example.com")
    for asked in ({"format": "csv"}, {}):
        answer = client.get("/api/v1/audit", query_string=asked, headers={
            "Authorization": f"Bearer {token}", "Accept": "text/csv"})
        text = answer.get_data(as_text=True)
        assert answer.mimetype == "text/csv"
        assert "'=HYPERLINK" in text and "'+1@example.com" in text


def test_audit_after_an_id_and_a_bad_cursor(client, app):
    token = _make(client, "finance", ["audit:read"])
    first = _get(client, "/api/v1/audit", token).json["data"]
    assert [e["action"] for e in first] == ["signed in", "API token created", "signed out"]
    assert _get(client, f"/api/v1/audit?after={first[-1]['id']}", token).json["data"] == []
    for bad, name in (("limit=0", "limit"), ("after=-1", "after"), ("next_page=xyz", "next_page"),
                      ("format=xml", "format")):
        answer = _get(client, f"/api/v1/audit?{bad}", token)
        assert answer.status_code == 422 and answer.json["error"]["message"].startswith(name)


@pytest.mark.parametrize("path, kind, at", [
    ("/api/v1/balance/history", "readings", "2026-11-03T08:50:00+00:00"),
    ("/api/v1/audit", "audit", None),
    ("/api/v1/checkouts", "checkouts", "2026-11-03T08:50:00+00:00")])
@pytest.mark.parametrize("forged_id", [2**31, 2**63, 10**30, -1, 1.5, "7", True])
def test_a_forged_cursor_with_an_id_out_of_range_is_a_422_not_a_500(client, path, kind, at,
                                                                     forged_id):
    """A cursor is base64 JSON a script can rewrite: an id no key can hold is refused
    before it reaches the database (SQLite raised OverflowError, a 500, for 2**63), and
    so is one that is no whole number (1.5 was read as 1, "7" as 7)."""
    token = _make(client, "finance", ["balance:read", "audit:read"])
    doc = [kind, [at, forged_id] if at else [forged_id]]
    cursor = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    answer = _get(client, f"{path}?next_page={cursor}", token)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.json["error"]["message"].startswith("next_page: this is not a cursor")
    assert _get(client, f"/api/v1/audit?after={2**31}", token).status_code == 422


def test_limits_per_token_and_per_address(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, API_REQUESTS_PER_MINUTE="3",
                   API_FAILURES_PER_MINUTE="2")
    client = app.test_client()
    token = _make(client, "viewer", ["usage:read"])
    answers = [_get(client, "/api/v1/tokens/self", token) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert int(answers[3].headers["Retry-After"]) > 0
    assert answers[3].json["error"]["type"] == "rate_limited"
    bad = [_get(client, "/api/v1/tokens/self", "wgb_nope").status_code for _ in range(3)]
    assert bad == [401, 401, 429]


def test_a_signed_in_browser_without_a_token_gets_json_401(client):
    AuthActions(client).login("admin")
    answer = client.get("/api/v1/balance")
    assert answer.status_code == 401 and answer.is_json
    assert answer.json["error"]["type"] == "invalid_token"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/v1/balance").status_code in (401, 405)


def test_over_real_http(app, client, seeded, caplog):
    caplog.set_level("INFO")
    token = _make(client, "finance", ALL)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/api/v1"
    try:
        request = urllib.request.Request(f"{base}/usage/daily?limit=2",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.load(answer)
            assert answer.headers["Content-Type"] == "application/json"
        assert len(body["data"]) == 2 and body["has_more"] and body["zone"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/balance", timeout=10)
        assert refused.value.code == 401
        assert json.load(refused.value)["error"]["type"] == "invalid_token"
    finally:
        server.shutdown()
        thread.join()
    assert "GET /api/v1/usage/daily?limit=2" in caplog.text  # the server's own log
    assert parse(token)[1] not in caplog.text


# -- the command ---------------------------------------------------------------------------

def test_the_tokens_command_creates_lists_and_revokes(app, client):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["tokens", "create", "nightly", "--team", "--scope",
                               "usage:read", "--days", "90"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert parse(token) is not None
    assert _get(client, "/api/v1/tokens/self", token).json["name"] == "nightly"
    listed = runner.invoke(args=["tokens", "list"])
    hint = listed.output.split("\t")[0]
    assert "nightly" in listed.output and "active" in listed.output and token not in listed.output
    assert runner.invoke(args=["tokens", "revoke", hint]).exit_code == 0
    assert _get(client, "/api/v1/tokens/self", token).json["error"]["type"] == "token_revoked"
    refused = runner.invoke(args=["tokens", "create", "x", "--user", "viewer@demo.test",
                                  "--scope", "audit:read"])
    assert refused.exit_code == 1 and "A viewer cannot read audit:read" in refused.output


def test_two_processes_on_one_redis_share_limits_demotions_and_revocations(tmp_path, sandbox,
                                                                           redis_server):
    """Two dashboards on one database and one Redis, as two gunicorn servers would be: a
    change made through one is in force on the other's very next request, and a token's
    minute is counted once for both."""
    shared, pepper = f"sqlite:///{tmp_path / 'shared.db'}", secrets.token_hex(32)
    apps = [make_app(tmp_path / name, SANDBOX=sandbox, DATABASE_URL=shared,
                     REDIS_URL=redis_server.url, API_REQUESTS_PER_MINUTE="5",
                     API_TOKEN_PEPPER=pepper)
            for name in ("a", "b")]
    one, other = (app.test_client() for app in apps)
    token = _make(one, "finance", ALL)
    spare = _make(one, "finance", ["usage:read"], name="spare")
    assert _get(other, "/api/v1/audit", token).status_code == 200
    with apps[0].app_context():
        set_role("finance@demo.test", "viewer", actor=trail.COMMAND_LINE)
    assert _get(other, "/api/v1/audit", token).status_code == 403
    assert _get(one, "/api/v1/tokens/self", token).json["rights"] == ["balance:read",
                                                                      "usage:read"]
    assert [_get(c, "/api/v1/tokens/self", token).status_code for c in (other, one, other)] \
        == [200, 200, 429]  # five a minute, wherever they land
    AuthActions(one).login("admin")
    with apps[0].app_context():
        spare_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "spare"))
    assert _get(other, "/api/v1/tokens/self", spare).status_code == 200
    one.post(f"/settings/tokens/{spare_id}/revoke")
    assert _get(other, "/api/v1/tokens/self", spare).json["error"]["type"] == "token_revoked"


# -- the published contract -----------------------------------------------------------------

def _conforms(value, schema, spec, where="reply") -> list[str]:
    """Where ``value`` breaks ``schema`` (OpenAPI 3.0: ``$ref``, ``nullable``), as paths;
    a property the schema does not name counts as a break too."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    kind = schema.get("type", "object")
    python = {"object": dict, "array": list, "string": str, "integer": int,
              "boolean": bool}[kind]
    if not isinstance(value, python) or (kind == "integer" and isinstance(value, bool)):
        return [f"{where}: not {kind}"]
    broken = []
    if kind == "object":
        props = schema.get("properties", {})
        broken += [f"{where}.{k}: missing" for k in schema.get("required", []) if k not in value]
        broken += [f"{where}.{k}: not documented" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                broken += _conforms(v, props[k], spec, f"{where}.{k}")
    if kind == "array":
        for i, item in enumerate(value):
            broken += _conforms(item, schema["items"], spec, f"{where}[{i}]")
    return broken


def test_every_reply_matches_the_published_document(app, client, seeded):
    """The OpenAPI document is generated from the views: every endpoint is in it with
    its refusals, and every reply -- figures and refusals -- has its documented shape."""
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.") and spec["security"] == [{"bearer": []}]
    routes = {r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")}
    assert set(spec["paths"]) == routes == set(ENDPOINTS) | {"/api/v1/tokens/self"}
    AuthActions(client).login("finance")
    client.get("/billing")
    client.post("/signout")
    token = _make(client, "finance", ALL)
    narrow = {s: _make(client, "viewer", [s], name=s) for s in ("balance:read", "usage:read")}
    for path, item in spec["paths"].items():
        answers = item["get"]["responses"]
        assert {"200", "401", "429"} <= set(answers)
        assert ("403" in answers) == (path in ENDPOINTS)
        assert ("422" in answers) == bool(item["get"].get("parameters"))
        for status, answer in (("200", _get(client, path, token)),
                               ("401", client.get(path)),
                               ("422", _get(client, f"{path}?limit=lots", token)),
                               ("403", _get(client, path, narrow[
                                   "usage:read" if ENDPOINTS.get(path) == "balance:read"
                                   else "balance:read"]))):
            if status not in answers:
                continue
            schema = answers[status]["content"]["application/json"]["schema"]
            assert str(answer.status_code) == status, (path, answer.json)
            assert _conforms(answer.json, schema, spec) == [], (path, status)


def test_the_reference_page_is_the_document_with_no_script(client):
    page = client.get("/api/v1/reference").get_data(as_text=True)
    assert "<script" not in page
    for path in (*ENDPOINTS, "/api/v1/tokens/self"):
        assert f"GET {path}</code>" in page
    assert "insufficient_scope" in page and "openapi.json" in page


def test_a_thousand_requests_cost_no_upstream_call(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, API_REQUESTS_PER_MINUTE="2000",
                   API_REQUESTS_PER_HOUR="2000", BILLING_CACHE_TTL="0")
    client = app.test_client()
    AuthActions(client).login("finance")
    client.get("/billing")  # a visit reads the balance once; from here on, none
    client.post("/signout")
    token = _make(client, "finance", ALL)
    calls = len(sandbox.calls)
    paths = [*ENDPOINTS, "/api/v1/tokens/self"]
    codes = {_get(client, paths[i % len(paths)], token).status_code for i in range(1000)}
    assert codes == {200} and len(sandbox.calls) == calls


@pytest.mark.parametrize("limit", [1, 2, 5, 13, 29, 30, 31, 400])
def test_following_next_page_gives_each_day_once_whatever_the_page_size(client, seeded,
                                                                         limit):
    token = _make(client, "viewer", ["usage:read"])
    whole = _get(client, "/api/v1/usage/daily?limit=400", token).json
    days, gaps, cursor = [], [], None
    while True:
        body = _get(client, f"/api/v1/usage/daily?limit={limit}" +
                    (f"&next_page={cursor}" if cursor else ""), token).json
        assert len(body["data"]) <= limit
        days += body["data"]
        gaps += body["stretches_without_readings"]
        cursor = body["next_page"]
        if not body["has_more"]:
            break
    assert days == whole["data"] and gaps == whole["stretches_without_readings"]
