"""Every figure agrees with every other: the forecast card, the chart's table, the usage
CSV, the readings CSV and the alert text, read side by side for the same history --
a period that begins mid-day with a reset inside the range, and a mid-period upgrade."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from webapp.extensions import db
from webapp.models import BalanceSnapshot

from .conftest import AuthActions, deliver_all, make_app

D = Decimal
STEP = timedelta(hours=2)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _write(app, sandbox, readings):
    """``readings``: ``(at, plan, plan credits, prepaid, period start, period end)``,
    oldest first; the sandbox's account is left at the last one."""
    with app.app_context():
        for at, plan, left, prepaid, start, end in readings:
            db.session.add(BalanceSnapshot(
                first_seen_at=at, last_seen_at=at, plan=plan, plan_credits_remaining=D(left),
                prepaid_balance=D(prepaid), total_balance=D(left) + D(prepaid),
                period_start=start, period_end=end))
        db.session.commit()
    _, plan, left, prepaid, start, end = readings[-1]
    with sandbox.state.edit() as account:
        account.update(plan=plan, planCreditsRemaining=str(left), prepaidBalance=str(prepaid),
                       periodStart=_iso(start), periodEnd=_iso(end))


def _draw(left: Decimal, prepaid: Decimal, amount: Decimal) -> tuple[Decimal, Decimal]:
    """Use ``amount``: plan credits first, then prepaid."""
    if left >= amount:
        return left - amount, prepaid
    return D(0), prepaid - (amount - left)


def _mid_day_period_with_a_reset(now):
    """The period began three days ago at 14:00; the last period's plan credits ran out
    and prepaid was drawn before the reset, and this period's too since."""
    start = (now - timedelta(days=3)).replace(hour=14, minute=0, second=0, microsecond=0)
    old = (start - timedelta(days=30), start)
    new = (start, start + timedelta(days=30))
    readings, left, prepaid, t = [], D("6.00"), D(50), start - timedelta(days=2)
    while t < start:  # the old period: 6 plan credits, then prepaid, 0.50 a reading
        readings.append((t, "starter-pro", left, prepaid, *old))
        left, prepaid = _draw(left, prepaid, D("0.50"))
        t += STEP
    left, t = D("100.00"), start + timedelta(hours=1)
    while t < now - timedelta(minutes=5):  # this period: 4.00 a reading, then 0.25 prepaid
        readings.append((t, "starter-pro", left, prepaid, *new))
        left, prepaid = _draw(left, prepaid, D("4.00") if left > 0 else D("0.25"))
        t += STEP
    readings.append((t, "starter-pro", left, prepaid, *new))
    return readings


def _upgrade_mid_period(now):
    """Ten days into the period, Starter Pro's credits ran down to 60, then the account
    moved to Pro (500 credits granted) and has used 20 of them since."""
    start = (now - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    period = (start, start + timedelta(days=30))
    readings, left, t = [], D(100), start + timedelta(minutes=30)
    while left > 60:
        readings.append((t, "starter-pro", left, D(50), *period))
        left -= D(1)
        t += STEP
    readings.append((t, "starter-pro", left, D(50), *period))
    left, t = D(500), t + STEP
    while t < now - timedelta(minutes=5) and left > 480:
        readings.append((t, "pro", left, D(50), *period))
        left -= D("0.50")
        t += STEP
    readings.append((t, "pro", left, D(50), *period))
    return readings


def _money(text: str) -> Decimal:
    return D(text.replace("$", "").replace(",", ""))


def _table(html: str) -> tuple[list[Decimal], str]:
    """The usage cells of the chart's table (what the readings tell), and its total."""
    table = re.search(r'<details class="usage-table">.*?</details>', html, re.S).group(0)
    cells = re.findall(r'</th>\s*<td class="figure">\$([\d,]+\.\d\d)', table)
    total = re.search(r'id="usage-total">([^<]+)<', table).group(1)
    return [_money(c) for c in cells], total


@pytest.mark.parametrize("scenario", [_mid_day_period_with_a_reset, _upgrade_mid_period])
def test_page_table_csvs_and_alert_agree_to_the_cent(tmp_path, sandbox, receiver, scenario):
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_RUNS_OUT_DAYS="365",
                   ALERT_SEND_EVERY="3600")
    readings = scenario(datetime.now(timezone.utc))
    _write(app, sandbox, readings)
    client = app.test_client()
    AuthActions(client).login("finance")
    html = client.get("/billing?range=period").get_data(as_text=True)

    # the forecast card and the "This period" table: one figure
    used = re.search(r'id="used-this-period"><strong>\$([\d,.]+)( or more)?</strong>', html)
    cells, total = _table(html)
    assert _money(used.group(1)) == sum(cells)
    assert total == f"${sum(cells):,.2f}" + (" or more" if used.group(2) else "")
    # the usage CSV of the same range: the same days, the same cents
    body = client.get("/billing/usage.csv?range=period").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert sum(_money(r["usage (USD)"]) for r in rows if r["usage (USD)"]) == sum(cells)
    # the readings CSV: every reading, the last one what the page shows
    readings_csv = list(csv.DictReader(io.StringIO(
        client.get("/billing/history.csv").get_data(as_text=True))))
    assert len(readings_csv) == len(readings)
    shown_total = re.search(r'id="total-balance">([^<]+)<', html).group(1)
    assert _money(shown_total) == D(readings_csv[-1]["total (USD)"])
    assert readings_csv[-1]["plan name"] in ("Starter Pro", "Pro")

    # the alert says the page's pace and the page's run-out date
    deliver_all(app)
    alerts = [json.loads(b) for _, b in receiver.received]
    pace = re.search(r'id="pace">([^<]+)<', html).group(1)
    if scenario is _upgrade_mid_period:
        # Pro's 500 credits a period cover the pace: the balance never runs out, so the
        # page names no date and the year-long run-out rule stays quiet
        assert "runs-out-on" not in html and "does not run out" in html
        assert not [a for a in alerts if a["rule"] == "runs out soon"]
        return
    runs_out, = [a for a in alerts if a["rule"] == "runs out soon"]
    date = re.search(r'id="runs-out-on">([^<]+)<', html).group(1)
    assert f"({pace} a day" in runs_out["text"]
    assert f"the balance runs out around {date}" in runs_out["text"]
    assert f"${D(runs_out['figures']['pacePerDay']):,.2f}" == pace


def test_a_mid_day_period_splits_its_first_day_and_the_reset_day(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox)
    readings = _mid_day_period_with_a_reset(datetime.now(timezone.utc))
    _write(app, sandbox, readings)
    client = app.test_client()
    AuthActions(client).login("finance")
    this = client.get("/billing?range=period").get_data(as_text=True)
    last = client.get("/billing?range=last-period").get_data(as_text=True)
    reset_day = readings[-1][4]
    label = f"{reset_day:%b} {reset_day.day}, {reset_day.year}"
    assert re.search(rf'<th scope="row">{label} <span class="muted small">from 14:00 UTC', this)
    until = re.search(rf'<th scope="row">{label} <span class="muted small">until 14:00 UTC'
                      r'</span></th>\s*<td class="figure">([^<]+)(?:<span[^>]*>[^<]*</span>)?'
                      r'</td>\s*<td class="figure">[^<]+</td><td class="figure">([^<]+)<', last)
    # the old period's last day: its own closing balance, not the new period's
    old_last = [r for r in readings if r[4] < reset_day][-1]
    assert _money(until.group(2)) == old_last[2] + old_last[3]
    # this period's table plus last period's add up to the whole of both, nothing twice
    this_cells, _ = _table(this)
    last_cells, _ = _table(last)
    used_before = sum(D("0.50") for r in readings if r[4] < reset_day) - D("0.50")
    # and before the old period's first reading: 100 granted, 6 left at that reading
    assert "<th scope=\"row\">Before the first reading" in last
    assert sum(last_cells) == used_before + D(94)
    # the unknown is in dollars and words: none here, the old credits had run out
    assert "0.000000" not in last and "Plus up to" not in last


def test_unknowns_are_money_with_a_reason_in_the_table_and_bounds_in_the_csv(
        tmp_path, sandbox):
    """A reset with plan credits left: up to that much more, in dollars, and why."""
    app = make_app(tmp_path, SANDBOX=sandbox)
    now = datetime.now(timezone.utc)
    start = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    old, new = (start - timedelta(days=30), start), (start, start + timedelta(days=30))
    _write(app, sandbox, [
        (start - timedelta(hours=3), "starter-pro", D("36.427083"), D(50), *old),
        (start - timedelta(hours=1), "starter-pro", D("36.427083"), D(50), *old),
        (start + timedelta(hours=1), "starter-pro", D("98.00"), D(50), *new),
        (now - timedelta(minutes=10), "starter-pro", D("97.00"), D(50), *new)])
    client = app.test_client()
    AuthActions(client).login("finance")
    last = client.get("/billing?range=last-period").get_data(as_text=True)
    assert "$0.00 to $36.43" in last
    assert "up to $36.43 more: the plan credits left at the last reading before the reset, " \
           "used before it or expired at it" in last
    assert "36.427083" not in last
    assert "Part unknown: the readings cannot tell all of that day" in last  # the legend
    rows = list(csv.DictReader(io.StringIO(
        client.get("/billing/usage.csv?range=last-period").get_data(as_text=True))))
    day = [r for r in rows if r["usage at most (USD)"] not in ("", r["usage (USD)"])]
    assert [(r["usage (USD)"], r["usage at most (USD)"]) for r in day] == [("0.00", "36.43")]
    this = client.get("/billing?range=period").get_data(as_text=True)
    assert "$3.00</strong> used this period" in this  # exact: 100 granted, 97 left


def _used_card_and_table(client) -> tuple[str, str]:
    html = client.get("/billing").get_data(as_text=True)
    card = re.search(r'id="used-this-period"><strong>([^<]+)</strong>', html).group(1)
    table = re.search(r'id="usage-total">([^<]+)<', html).group(1)
    return card, table, html


def test_one_used_this_period_on_a_fresh_install_and_after_a_plan_change(tmp_path, sandbox):
    """No history yet: the card, the table and the CSV all say the $25.50 the gauge's
    plan credits show used (100 granted, 74.50 left), the part before the first
    reading in a row of its own. Then the plan changes: $25.50 or more, and the gauge's
    sentence speaks of the new plan's credits since the change."""
    from webapp.services.arrivals import settle

    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0")
    client = app.test_client()
    AuthActions(client).login("finance")
    card, table, html = _used_card_and_table(client)
    assert card == table == "$25.50"
    assert '<th scope="row">Before the first reading' in html
    rows = list(csv.DictReader(io.StringIO(
        client.get("/billing/usage.csv?range=period").get_data(as_text=True))))
    assert sum(_money(r["usage (USD)"]) for r in rows if r["usage (USD)"]) == D("25.50")
    settle(app)
    with sandbox.state.edit() as account:  # upgraded: Pro's 500 credits granted
        account["plan"], account["planCreditsRemaining"] = "pro", "500"
    card, table, html = _used_card_and_table(client)
    assert card == "$25.50 or more" and table == "$25.50 or more"
    assert "so the gauge counts Pro’s plan credits, granted again at the change: $0.00 of " \
           "them used since" in html
    assert "The gauge counts plan credits only" not in html


def test_the_pace_is_the_last_7_days_table_over_its_days(tmp_path, sandbox):
    """The forecast's pace names its stretch and its sum, and they are the "Last 7
    days" table's: one stretch, one figure, one label."""
    from webapp.giga.client import parse_billing
    from webapp.services.history.seed import seed

    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0")
    with app.app_context():
        seed(parse_billing({"billing": sandbox.state.billing()}), D(100),
             datetime.now(timezone.utc) - timedelta(minutes=1))
    client = app.test_client()
    AuthActions(client).login("finance")
    html = client.get("/billing?range=7").get_data(as_text=True)
    pace = re.search(r'id="pace">\$([\d.]+)</span> a day, from the last 7 days \(\$([\d,.]+) '
                     r'from (\w+ \d+) to now, ([\d.]+) days\)', html)
    _, total = _table(html)
    assert pace and f"${pace.group(2)}" == total
    first = re.findall(r'<th scope="row">(\w+ \d+), \d{4}', html)[-1]  # the table's first day
    assert pace.group(3) == first
    # the pace is that sum over those days (shown rounded: a cent a day, a tenth of a day)
    assert abs(D(pace.group(1)) * D(pace.group(4)) - _money(total)) <= \
        D("0.005") * D(pace.group(4)) + D("0.05") * D(pace.group(1))


def _usage_by_label(html: str) -> tuple[dict, dict]:
    """The chart's bars and the table's rows, each ``{day label: usage text}``."""
    svg = re.search(r'<svg class="chart".*?</svg>', html, re.S).group(0)
    bars = dict(t.split(": ") for t in re.findall(
        r'<rect class="bar[^"]*"[^>]*><title>([^<]+)</title>', svg))
    table = re.search(r'<details class="usage-table">.*?</details>', html, re.S).group(0)
    rows = dict(re.findall(r'<th scope="row">(\w{3} \d+, \d{4})</th>\s*<td class="figure">'
                           r'([^<]+)<', table))
    return bars, rows


def test_chart_table_and_csv_agree_day_by_day_in_los_angeles(tmp_path, sandbox):
    """Sixty days of readings every two hours, the team in Los Angeles: the chart's bars,
    the table's rows and the CSV's days are the same Pacific days with the same cents;
    each CSV day says its UTC start and end and its hours (23 or 25 when the clocks
    change), and the range's total is what it is in UTC."""
    from zoneinfo import ZoneInfo

    la = ZoneInfo("America/Los_Angeles")
    now = datetime.now(timezone.utc)
    start = (now - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    old, new = (start - timedelta(days=30), start), (start, start + timedelta(days=30))
    readings, t, left, prepaid = [], now - timedelta(days=60), D(100), D(200)
    while t < now - timedelta(minutes=30):
        period = new if t >= start else old
        readings.append((t, "starter-pro", left, prepaid, *period))
        left, prepaid = _draw(left, prepaid, D("0.75") if t.hour % 6 else D("1.30"))
        t += STEP
        if t >= start and period == old:
            left = D(100)
    _write(app := make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                           DISPLAY_TIMEZONE="America/Los_Angeles"), sandbox, readings)
    client = app.test_client()
    AuthActions(client).login("finance")
    html = client.get("/billing?range=90").get_data(as_text=True)
    assert "days in America/Los_Angeles, UTC−0" in html
    bars, rows = _usage_by_label(html)
    assert len(bars) >= 59 and bars == {k: v for k, v in rows.items() if k in bars}
    body = client.get("/billing/usage.csv?range=90").get_data(as_text=True)
    csv_rows = list(csv.DictReader(io.StringIO(body)))
    days = [r for r in csv_rows if r["note"] != "no readings" and r["hours"] in
            ("23", "24", "25")]
    for r in days:
        d = datetime.strptime(r["date (America/Los_Angeles)"], "%Y-%m-%d")
        assert rows[f"{d:%b} {d.day}, {d.year}"] == f"${_money(r['usage (USD)']):,.2f}"
    for r in csv_rows[:90]:
        d = datetime.strptime(r["date (America/Los_Angeles)"], "%Y-%m-%d").date()
        begins = datetime.combine(d, datetime.min.time(), tzinfo=la).astimezone(timezone.utc)
        ends = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=la) \
            .astimezone(timezone.utc)
        assert (r["start (UTC)"], r["end (UTC)"], r["hours"]) == (
            f"{begins:%Y-%m-%d %H:%M:%S}", f"{ends:%Y-%m-%d %H:%M:%S}",
            str(int((ends - begins).total_seconds() // 3600)))
    # the same readings in UTC days: other days, the same total
    utc = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0")
    utc_client = utc.test_client()
    AuthActions(utc_client).login("finance")
    utc_html = utc_client.get("/billing?range=90").get_data(as_text=True)
    assert "days in UTC." in utc_html
    total = re.search(r'id="usage-total">([^<]+)<', html).group(1)
    assert re.search(r'id="usage-total">([^<]+)<', utc_html).group(1) == total
    assert _money(total) == sum(_money(r["usage (USD)"]) for r in csv_rows if r["usage (USD)"])


def test_budget_card_chart_line_and_alert_agree_to_the_cent(tmp_path, sandbox, receiver):
    """A budget below what this period used: the card's "used" is the forecast card's, the
    chart's line is the budget over the period's days, and the alert quotes both."""
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_SEND_EVERY="3600")
    _write(app, sandbox, _mid_day_period_with_a_reset(datetime.now(timezone.utc)))
    client = app.test_client()
    AuthActions(client).login("finance")
    html = client.get("/billing?range=period").get_data(as_text=True)
    used = _money(re.search(r'id="used-this-period"><strong>\$([\d,.]+)<', html).group(1))
    assert client.post("/alerts/budget", data={"amount": "60", "basis": "period",
                                               "spike_sensitivity": "medium"}
                       ).status_code == 303
    html = client.get("/billing?range=period").get_data(as_text=True)
    assert _money(re.search(r'id="budget-used">([^<]+)<', html).group(1)) == used
    assert _money(re.search(r'id="used-this-period"><strong>\$([\d,.]+)<', html)
                  .group(1)) == used
    per_day = (D(60) / 30).quantize(D("0.01"))  # the period is 30 days long
    line = re.search(r'id="budget-line"[^>]*><title>Budget’s share a day: ([^<]+)<', html)
    assert _money(line.group(1)) == per_day
    assert f"budget’s share a day, ${per_day}" in html
    words = re.search(r'id="budget-words"><strong>([^<]+)<', html).group(1)
    assert words.startswith(f"{int(used / 60 * 100)} % used")
    deliver_all(app)
    alert, = [json.loads(b) for _, b in receiver.received if json.loads(b)["rule"] == "budget"]
    assert alert["title"] == "100% of the budget used"
    assert f"${used:,.2f} of the $60.00 budget" in alert["text"]
    assert words in alert["text"]
    assert D(alert["figures"]["used"]) == used
