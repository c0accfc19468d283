"""The team's time zone: ``DISPLAY_TIMEZONE`` checked at start, changed by finance or
an admin on the settings page (audited, from → to), and every date and time the
dashboard shows in it, with its abbreviation."""
import csv
import io
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from webapp import ConfigError, create_app
from webapp.clock import FrozenClock
from webapp.extensions import db
from webapp.formatting import clock, countdown, day, moment, stamp, zone_label
from webapp.models import AccountSettings, Alert, AuditEntry, BalanceSnapshot
from webapp.services.zone import REFRESH_SECONDS, display_zone

from .conftest import AuthActions, make_app
from .support.faultserver import BILLING, PLANS, ok

UTC = timezone.utc
LA = ZoneInfo("America/Los_Angeles")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
#: an instant in LA's winter (PST) and one in its summer (PDT)
WINTER = datetime(2026, 12, 2, 16, 15, 3, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, 16, 15, 0, tzinfo=UTC)


def _choose(client, zone):
    return client.post("/settings", data={"zone": zone})


def _row(app):
    with app.app_context():
        db.session.expire_all()
        return db.session.get(AccountSettings, 1)


def _trail(app, action="time zone saved"):
    with app.app_context():
        return [(e.user_email, e.user_role, e.outcome, e.detail)
                for e in AuditEntry.query.filter_by(action=action).order_by(AuditEntry.id)]


# -- how a time reads --------------------------------------------------------------

def test_times_read_in_the_zone_with_its_abbreviation():
    assert stamp(WINTER, LA) == "2026-12-02 08:15:03 PST"
    assert stamp(SUMMER, LA) == "2026-07-01 09:15:00 PDT"
    assert stamp(WINTER) == "2026-12-02 16:15:03 UTC"
    assert clock(WINTER, LA) == "08:15 PST"
    # the database has no letters for Nepal's time: the offset stands in for them
    assert clock(WINTER, KATHMANDU) == "22:00 UTC+05:45"
    assert moment(WINTER, ZoneInfo("America/Sao_Paulo")) == "Dec 2, 2026, 13:15 UTC−03:00"
    # a UTC evening is the same day in LA, a UTC early morning the day before
    late = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert (day(late), day(late, LA), day(late, KATHMANDU)) == (
        "Dec 2, 2026", "Dec 1, 2026", "Dec 2, 2026")


def test_the_zone_is_named_with_its_offset_now():
    assert zone_label(LA, WINTER) == "America/Los_Angeles, UTC−08:00"
    assert zone_label(LA, SUMMER) == "America/Los_Angeles, UTC−07:00"
    assert zone_label(KATHMANDU, WINTER) == "Asia/Kathmandu, UTC+05:45"
    assert zone_label(ZoneInfo("UTC"), WINTER) == "UTC"
    assert zone_label(ZoneInfo("Europe/London"), WINTER) == "Europe/London, UTC+00:00"


@pytest.mark.parametrize("left,words", [
    (timedelta(days=18, hours=2), "in 18 days 2 hours"),
    (timedelta(days=18, seconds=-2), "in 18 days"),  # read two seconds ago
    (timedelta(days=17, hours=23, minutes=59), "in 18 days"),  # to the nearest hour
    (timedelta(days=1, minutes=30), "in 1 day"),
    (timedelta(hours=5, minutes=12), "in 5 hours 12 minutes"),
    (timedelta(hours=1), "in 1 hour"),
    (timedelta(minutes=4), "in 4 minutes"),
    (timedelta(seconds=20), "now"),
    (timedelta(hours=-2), "already passed"),
])
def test_a_countdown_in_words(left, words):
    assert countdown(WINTER + left, WINTER) == words


# -- the setting, checked at start ---------------------------------------------------

@pytest.mark.parametrize("name", ["Mars/Olympus", "america/los_angeles", "PST", "UTC+2",
                                  "../../etc/passwd", "/usr/share/zoneinfo/UTC", "localtime",
                                  "America", "zone.tab", "x" * 300, "Europe/Berlin\x00"],
                         ids=lambda name: name[:20].replace("\x00", "NUL"))
def test_an_unknown_zone_refuses_to_start_naming_the_setting(tmp_path, sandbox, name):
    with pytest.raises(ConfigError) as info:
        create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path), "SANDBOX": sandbox,
                    "GIGA_SANDBOX": "1", "DISPLAY_TIMEZONE": name})
    assert "DISPLAY_TIMEZONE" in str(info.value) and "America/Los_Angeles" in str(info.value)


def test_the_flask_command_with_an_unknown_zone_says_so_plainly(tmp_path):
    env = {**os.environ, "GIGA_SANDBOX": "1", "INSTANCE_PATH": str(tmp_path),
           "DISPLAY_TIMEZONE": "Mars/Olympus"}
    env.pop("GIGA_API_KEY", None)
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", "0"],
                            cwd=Path(__file__).resolve().parents[1], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "DISPLAY_TIMEZONE" in result.stderr and "Mars/Olympus" in result.stderr


def test_the_setting_is_the_zone_until_one_is_chosen(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, DISPLAY_TIMEZONE=" Asia/Kathmandu ")
    assert app.config["DISPLAY_TIMEZONE"] == "Asia/Kathmandu"
    with app.app_context():  # outside any request, as the alert sender's thread asks
        assert display_zone() == KATHMANDU
    client = app.test_client()
    AuthActions(client).login("finance")
    html = client.get("/settings").get_data(as_text=True)
    assert "The server's <code>DISPLAY_TIMEZONE</code> setting." in html
    assert '<option selected value="">' in html
    assert "Days and times in <span id=\"shown-zone\">Asia/Kathmandu, UTC+05:45</span>" in html


# -- the settings page ----------------------------------------------------------------

@pytest.mark.parametrize("role", ["finance", "admin"])
def test_finance_and_admins_choose_the_zone_audited_from_and_to(client, auth, app, role):
    auth.login(role)
    page = client.get("/settings")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<optgroup label="America">' in html and 'value="America/Los_Angeles"' in html
    assert "Days and times are shown in <strong>UTC</strong>" in html
    assert 'href="/settings" aria-current="page">Settings</a>' in html

    resp = _choose(client, "America/Los_Angeles")
    assert resp.status_code == 303 and resp.location.endswith("/settings")
    row = _row(app)
    assert (row.display_timezone, row.updated_by) == ("America/Los_Angeles",
                                                     f"{role}@demo.test")
    html = client.get("/settings").get_data(as_text=True)
    assert "Time zone saved: America/Los_Angeles." in html
    assert re.search(r"Days and times are shown in <strong>America/Los_Angeles, "
                     r"UTC−0[78]:00</strong>: it is \w{3} \d+, \d{4}, \d\d:\d\d P[SD]T there now",
                     html)
    assert '<option selected value="America/Los_Angeles">' in html

    _choose(client, "America/Los_Angeles")  # saved again: on the trail, as unchanged
    _choose(client, "")  # back to the server's setting
    assert _row(app).display_timezone is None
    assert _trail(app) == [
        (f"{role}@demo.test", role, "done", "from: UTC (DISPLAY_TIMEZONE) → to: America/Los_Angeles"),
        (f"{role}@demo.test", role, "done, unchanged",
         "from: America/Los_Angeles → to: America/Los_Angeles"),
        (f"{role}@demo.test", role, "done", "from: America/Los_Angeles → to: UTC (DISPLAY_TIMEZONE)")]
    trail = client.get("/audit?action=time+zone+saved").get_data(as_text=True)
    assert "from: UTC (DISPLAY_TIMEZONE) → to: America/Los_Angeles" in trail


@pytest.mark.parametrize("name", ["Mars/Olympus", "america/los_angeles", "../../etc/passwd",
                                  "localtime", "\x00", "é" * 300, "x" * 3000, " "],
                         ids=["unknown", "lower case", "a path", "the host's", "NUL",
                              "accents", "long", "blank"])
def test_an_unknown_zone_on_the_page_is_a_message_by_the_field_and_changes_nothing(
        client, auth, app, name):
    auth.login("admin")
    _choose(client, "Europe/Berlin")
    before = _trail(app)
    resp = _choose(client, name)
    html = resp.get_data(as_text=True)
    if not name.strip():  # a blank choice is the server's setting: a choice like any other
        assert resp.status_code == 303
        return
    assert resp.status_code == 422
    error = re.search(r'<p class="field-error" id="zone-error"><span>(.*?)</span>', html)
    assert error and "is not a time zone; choose one from the list" in error.group(1)
    assert re.search(r'<select aria-describedby="[^"]*zone-error" aria-invalid="true"', html)
    assert '<option selected value="Europe/Berlin">' in html  # the zone in force, kept
    assert _row(app).display_timezone == "Europe/Berlin"
    assert _trail(app) == before
    assert "Days and times in <span id=\"shown-zone\">Europe/Berlin, UTC+0" in html


def test_viewers_are_refused_and_nothing_changes(client, auth, app):
    auth.login("viewer")
    assert 'href="/settings"' not in client.get("/billing").get_data(as_text=True)
    assert client.get("/settings").status_code == 403
    resp = _choose(client, "America/Los_Angeles")
    assert resp.status_code == 403 and "does not allow this" in resp.get_data(as_text=True)
    assert _row(app) is None and _trail(app) == []
    with app.app_context():
        assert display_zone() == ZoneInfo("UTC")


def test_anonymous_visitors_are_sent_to_sign_in(client, app):
    assert client.get("/settings").status_code == 302
    assert _choose(client, "America/Los_Angeles").status_code == 302
    assert _row(app) is None


def test_the_form_needs_its_csrf_token(csrf_app):
    client = csrf_app.test_client()
    html = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    client.post("/signin", data={"email": "finance@demo.test", "password": "demo",
                                 "csrf_token": token})
    resp = _choose(client, "America/Los_Angeles")
    assert resp.status_code == 400 and "form has expired" in resp.get_data(as_text=True)
    assert _row(csrf_app) is None and _trail(csrf_app) == []
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      client.get("/settings").get_data(as_text=True)).group(1)
    resp = client.post("/settings", data={"zone": "America/Los_Angeles", "csrf_token": token})
    assert resp.status_code == 303 and _row(csrf_app).display_timezone == "America/Los_Angeles"


def test_saves_are_bounded_per_user(client, auth, app):
    auth.login("finance")
    codes = [_choose(client, zone).status_code
             for zone in ["Europe/Berlin", "Asia/Tokyo"] * 6]
    assert codes == [303] * 10 + [429, 429]
    assert len(_trail(app)) == 10 and _row(app).display_timezone == "Asia/Tokyo"


# -- every process, and outside requests ------------------------------------------------

def test_a_change_reaches_every_process_within_the_refresh(tmp_path, sandbox):
    clocks = FrozenClock(), FrozenClock()
    one, two = (make_app(tmp_path, SANDBOX=sandbox, CLOCK=c) for c in clocks)
    first, second = one.test_client(), two.test_client()
    AuthActions(first).login("admin")
    AuthActions(second).login("viewer")
    footer = re.compile(r'<span id="shown-zone">([^<]+)</span>')
    assert footer.search(second.get("/billing").get_data(as_text=True)).group(1) == "UTC"
    _choose(first, "Asia/Kathmandu")
    # the process that saved shows it at once
    assert "Asia/Kathmandu" in footer.search(first.get("/billing").get_data(as_text=True)).group(1)
    clocks[1].advance(REFRESH_SECONDS)
    assert footer.search(second.get("/billing").get_data(as_text=True)).group(1) == \
        "Asia/Kathmandu, UTC+05:45"
    with two.app_context():  # and so does a thread of it outside any request
        assert display_zone() == KATHMANDU


def test_a_settings_table_that_cannot_be_read_leaves_the_zone_known(tmp_path, sandbox, caplog):
    clock = FrozenClock()
    app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=clock, DISPLAY_TIMEZONE="Europe/Berlin")
    client = app.test_client()
    AuthActions(client).login("finance")
    _choose(client, "Asia/Tokyo")
    with app.app_context():
        db.session.execute(db.text("DROP TABLE account_settings"))
        db.session.commit()
    caplog.set_level(logging.WARNING, "webapp.services.zone")
    for _ in range(3):
        clock.advance(REFRESH_SECONDS)
        resp = client.get("/billing")
        assert resp.status_code == 200 and "Asia/Tokyo, UTC+09:00" in resp.get_data(as_text=True)
    said = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(said) == 1 and "Asia/Tokyo meanwhile" in said[0]
    # a process that never read it shows the setting
    other = make_app(tmp_path, SANDBOX=sandbox, DISPLAY_TIMEZONE="Europe/Berlin").test_client()
    AuthActions(other).login("viewer")
    assert "Europe/Berlin, UTC+0" in other.get("/billing").get_data(as_text=True)


# -- every time shown, in the zone -------------------------------------------------------

def _seed_trail(app):
    with app.app_context():
        db.session.add_all([
            AuditEntry(at=WINTER, user_email="f@x.com", user_role="finance", action="top-up",
                       amount=10, outcome="sent to checkout", seen="credited",
                       seen_at=WINTER + timedelta(minutes=3)),
            AuditEntry(at=SUMMER, user_email="a@x.com", user_role="admin",
                       action="plan change", plan_from="free", plan_to="pro",
                       outcome="upstream error: INTERNAL_ERROR"),
            # 05:00 UTC on Dec 2 is still Dec 1 in Los Angeles
            AuditEntry(at=datetime(2026, 12, 2, 5, 0, tzinfo=UTC), user_email="late@x.com",
                       user_role="finance", action="top-up", amount=20,
                       outcome="sent to checkout"),
        ])
        db.session.commit()


def test_every_time_on_the_audit_trail_is_in_the_zone(client, auth, app):
    _seed_trail(app)
    auth.login("finance")
    _choose(client, "America/Los_Angeles")
    html = client.get("/audit").get_data(as_text=True)
    assert '<td data-label="When">2026-12-02 08:15:03 PST</td>' in html
    assert '<td data-label="When">2026-07-01 09:15:00 PDT</td>' in html
    assert '<td data-label="When">2026-12-01 21:00:00 PST</td>' in html
    assert '<span class="muted small">2026-12-02 08:18:03 PST</span>' in html  # seen at
    assert "(UTC)" not in html and "16:15:03" not in html
    assert "Times, and the days the dates below pick, are in America/Los_Angeles" in html
    # the date filters pick the zone's days
    dec1 = client.get("/audit?from=2026-12-01&to=2026-12-01").get_data(as_text=True)
    assert "late@x.com" in dec1 and "f@x.com" not in dec1
    dec2 = client.get("/audit?from=2026-12-02&to=2026-12-02").get_data(as_text=True)
    assert "f@x.com" in dec2 and "late@x.com" not in dec2


def test_the_audit_csv_keeps_utc_and_adds_the_zone(client, auth, app):
    _seed_trail(app)
    auth.login("finance")
    _choose(client, "America/Los_Angeles")
    rows = list(csv.DictReader(io.StringIO(
        client.get("/audit/export.csv?action=top-up").get_data(as_text=True))))
    winter, late = rows  # newest first
    assert (late["time (UTC)"], late["time (local: America/Los_Angeles)"]) == (
        "2026-12-02 05:00:00", "2026-12-01 21:00:00")
    assert (winter["seen at (UTC)"], winter["seen at (local: America/Los_Angeles)"]) == (
        "2026-12-02 16:18:03", "2026-12-02 08:18:03")
    header = client.get("/audit/export.csv").get_data(as_text=True).splitlines()[0]
    assert header.startswith("time (UTC),email,role,action,amount (USD)")
    assert header.endswith("seen at (UTC),time (local: America/Los_Angeles),"
                           "seen at (local: America/Los_Angeles)")


def test_the_readings_csv_keeps_utc_and_adds_the_zone(client, auth, app):
    auth.login("finance")
    _choose(client, "Asia/Kathmandu")
    client.get("/billing")  # a reading, recorded just after the page
    from webapp.services.arrivals import settle
    settle(app)
    rows = list(csv.DictReader(io.StringIO(
        client.get("/billing/history.csv").get_data(as_text=True))))
    assert rows
    for row in rows:
        for which in ("first seen", "last seen"):
            utc = datetime.fromisoformat(row[f"{which} (UTC)"]).replace(tzinfo=UTC)
            assert row[f"{which} (local: Asia/Kathmandu)"] == \
                f"{utc.astimezone(KATHMANDU):%Y-%m-%d %H:%M:%S}"


@pytest.fixture
def fixed_app(tmp_path, fault_server):
    """The dashboard against a billing API whose period ends 2024-04-01 00:00 UTC, read
    at 2024-03-13 22:00 UTC (18 days 2 hours before), signed in as finance."""
    fault_server.handler = lambda m, p, b: ok(PLANS) if p.endswith("/plans") else ok(BILLING)
    from webapp.services.users import create_user
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_zone",
                   CLOCK=FrozenClock(datetime(2024, 3, 13, 22, 0, tzinfo=UTC)))
    with app.app_context():
        create_user("finance@example.com", "finance", "correct-horse-battery")
    client = app.test_client()
    client.post("/signin", data={"email": "finance@example.com",
                                 "password": "correct-horse-battery"})
    return app, client


def test_the_period_end_is_an_instant_and_a_countdown_in_the_zone(fixed_app):
    _, client = fixed_app
    html = client.get("/billing").get_data(as_text=True)
    assert ('Period ends <strong>Apr 1, 2024, 00:00 UTC</strong> — '
            '<span id="days-left">in 18 days 2 hours</span>') in html
    _choose(client, "America/Los_Angeles")  # LA is on summer time since Mar 10
    html = client.get("/billing").get_data(as_text=True)
    assert ('Period ends <strong>Mar 31, 2024, 17:00 PDT</strong> — '
            '<span id="days-left">in 18 days 2 hours</span>') in html
    assert "Period <strong>Feb 29, 2024 – Mar 31, 2024</strong>" in html
    assert "Figures read 15:00 PDT." in html
    assert "Days and times in <span id=\"shown-zone\">America/Los_Angeles, UTC−07:00</span>" \
        in html and "Times in UTC" not in html


def test_alert_texts_and_the_alerts_page_name_times_in_the_zone(tmp_path, sandbox, receiver):
    from .conftest import deliver_all
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_SEND_EVERY="3600")
    admin = app.test_client()
    AuthActions(admin).login("admin")
    _choose(admin, "America/Los_Angeles")
    # the period ends at 03:55 UTC: the evening before, in Los Angeles
    end = (datetime.now(UTC) + timedelta(days=10)).replace(hour=3, minute=55, second=0,
                                                           microsecond=0)
    with sandbox.state.edit() as account:
        account.update(planCreditsRemaining="40.00",
                       periodEnd=end.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    admin.get("/billing")
    deliver_all(app)
    local = end.astimezone(LA)
    said = f"the period ends {local:%b} {local.day}, {local.year}, {local:%H:%M} {local.tzname()}"
    assert local.hour in (19, 20) and local.day != end.day
    with app.app_context():
        alert = Alert.query.one()
        fired = alert.fired_at.astimezone(LA)
    assert said in alert.body
    assert said in receiver.received[0][1].decode()
    html = admin.get("/alerts").get_data(as_text=True)
    assert said in html
    assert f'<td data-label="When">{fired:%Y-%m-%d %H:%M:%S} {fired.tzname()}</td>' in html
    assert '<th scope="col">When</th>' in html and "(UTC)" not in html


# -- the chart, re-bucketed ----------------------------------------------------------------

def _usage_table(html):
    """The chart's table rows (name, usage) and its total, as the page shows them."""
    table = re.search(r'<details class="usage-table">.*?</details>', html, re.S).group(0)
    rows = re.findall(r'<tr><th scope="row">([^<]+?)(?: <span.*?)?</th>\s*'
                      r'<td class="figure">(\$[\d,]+\.\d\d)', table)
    return rows, re.search(r'id="usage-total">([^<]+)<', table).group(1)


def test_a_new_zone_re_buckets_the_chart_and_keeps_the_total(client, auth, app, sandbox):
    """Readings every two hours since the period began, half a credit each: the same
    readings drawn as UTC days, then as Kathmandu's (UTC+05:45)."""
    billing = sandbox.state.billing()
    start = datetime.fromisoformat(billing["currentPeriodStart"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(billing["currentPeriodEnd"].replace("Z", "+00:00"))
    now, at, left = datetime.now(UTC), start + timedelta(hours=1), 100 * 100
    with app.app_context():
        while at < now - timedelta(minutes=5):
            db.session.add(BalanceSnapshot(
                first_seen_at=at, last_seen_at=at, plan="starter-pro",
                plan_credits_remaining=Decimal(left) / 100, prepaid_balance=Decimal(50),
                total_balance=Decimal(left) / 100 + 50, period_start=start, period_end=end))
            at, left = at + timedelta(hours=2), left - 50
        db.session.commit()
    with sandbox.state.edit() as account:
        account.update(planCreditsRemaining=f"{left / 100:.2f}")
    auth.login("finance")
    utc_rows, utc_total = _usage_table(client.get("/billing?range=30").get_data(as_text=True))
    _choose(client, "Asia/Kathmandu")
    html = client.get("/billing?range=30").get_data(as_text=True)
    assert "days in Asia/Kathmandu, UTC+05:45" in html
    rows, total = _usage_table(html)
    assert total == utc_total and utc_total != "$0.00"
    assert rows != utc_rows  # the same readings, other days
    assert abs(len(rows) - len(utc_rows)) <= 1  # the days the period touches, there


def test_the_forecasts_pace_is_the_zones_last_7_days(client, auth, app, sandbox):
    """The pace names the "Last 7 days" table's stretch and sum in the zone chosen, as
    it does in UTC (tests/test_figures_agree.py): the page and the alerts read it."""
    from webapp.giga.client import parse_billing
    from webapp.services.history.seed import seed

    with app.app_context():
        seed(parse_billing({"billing": sandbox.state.billing()}), Decimal(100),
             datetime.now(UTC) - timedelta(minutes=1))
    auth.login("finance")
    _choose(client, "Asia/Kathmandu")
    html = client.get("/billing?range=7").get_data(as_text=True)
    pace = re.search(r'id="pace">\$([\d.]+)</span> a day, from the last 7 days \(\$([\d,.]+) '
                     r'from (\w+ \d+) to now, ([\d.]+) days\)', html)
    rows, total = _usage_table(html)
    assert pace and f"${pace.group(2)}" == total
    assert rows[-1][0].startswith(pace.group(3) + ",")  # the table's first day
