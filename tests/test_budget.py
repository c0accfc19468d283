"""The budget: what the page says of it in words, the alerts it sends once a window each,
and the form that sets it (finance or an admin, audited, bad input refused by the field)."""
from __future__ import annotations

import json
import secrets
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from webapp.extensions import db
from webapp.giga import Billing
from webapp.models import Alert, AuditEntry, BudgetSettings
from webapp.services.budget import status, window
from webapp.services.forecast import Forecast
from webapp.services.users import create_user

from .conftest import AuthActions, deliver_all, make_app
from .support.processes import flask

UTC = ZoneInfo("UTC")


def _billing(start, end, plan_left="0", prepaid="100"):
    return Billing(plan="starter-pro", plan_credits_remaining=Decimal(plan_left),
                   prepaid_balance=Decimal(prepaid),
                   total_balance=Decimal(plan_left) + Decimal(prepaid),
                   period_start=start, period_end=end)


def _outlook(used, pace):
    return Forecast(pace_per_day=Decimal(pace), used=Decimal(used),
                    elapsed_fraction=Decimal("0.5"), days_left=15)


def _row(amount, basis="period"):
    return BudgetSettings(id=1, amount=Decimal(amount), basis=basis,
                          spike_sensitivity="medium")


START = datetime(2027, 3, 1, tzinfo=timezone.utc)
END = datetime(2027, 3, 31, tzinfo=timezone.utc)


def test_the_budget_in_words_names_the_day_it_is_reached():
    now = START + timedelta(days=15)
    s = status(_row("500"), _billing(START, END), _outlook("310", "17.34"), None, now,
               read_at=now, zone=UTC)
    # 310 + 17.34 a day × 15 days left = 570.10: 114 % of 500; 190 more in 10.96 days
    assert s.forecast == Decimal("570.10")
    assert s.words() == "62 % used · on pace for 114 % · budget reached Mar 26, 5 days early"
    assert s.forecast_ready and s.forecast_over and not s.over


def test_under_budget_and_over_budget_say_so():
    now = START + timedelta(days=15)
    under = status(_row("1000"), _billing(START, END), _outlook("310", "10"), None, now,
                   read_at=now, zone=UTC)
    assert under.words() == "31 % used · on pace for 46 % · within budget"
    over = status(_row("300"), _billing(START, END), _outlook("310", "10"), None, now,
                  read_at=now, zone=UTC)
    assert over.words() == "103 % used · on pace for 153 % · budget reached, $10.00 over"


def test_the_forecast_is_not_ready_before_three_days_and_a_tenth_of_the_window():
    for days, ready in ((2, False), (3, True)):
        now = START + timedelta(days=days)
        s = status(_row("100"), _billing(START, END), _outlook("50", "20"), None, now,
                   read_at=now, zone=UTC)
        assert s.forecast_ready is ready
    long_end = START + timedelta(days=60)  # 10 % of 60 days is 6 days
    now = START + timedelta(days=4)
    assert not status(_row("100"), _billing(START, long_end), _outlook("50", "20"), None,
                      now, read_at=now, zone=UTC).forecast_ready


def test_a_calendar_month_is_the_month_of_the_accounts_zone():
    zone = ZoneInfo("America/Los_Angeles")
    # 2027-04-01 03:00 UTC is still March 31 in Los Angeles
    w = window("month", _billing(START, END), datetime(2027, 4, 1, 3, tzinfo=timezone.utc),
               zone)
    assert w.key == "month:2027-03" and w.name == "March 2027"
    assert w.start == datetime(2027, 3, 1, 8, tzinfo=timezone.utc)
    assert w.end == datetime(2027, 4, 1, 7, tzinfo=timezone.utc)


# -- through the app ---------------------------------------------------------------------

@pytest.fixture
def budget_app(tmp_path, sandbox, receiver):
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   ALERT_WEBHOOK_URL=receiver.url, PUBLIC_URL="https://billing.example.com",
                   ALERT_SEND_EVERY="3600")
    with app.app_context():
        create_user("boss@example.com", "admin", "a-long-password-1")
    return app


def _signed_in(app, role):
    client = app.test_client()
    AuthActions(client).login(role)
    return client


def _used_this_period(html: str) -> Decimal:
    found = re.search(r'id="used-this-period">\s*<strong>\$([\d,]+\.\d\d)', html)
    return Decimal(found.group(1).replace(",", ""))


def _webhooks(receiver):
    return [json.loads(body) for _, body in receiver.received]


def test_finance_sets_a_budget_and_the_page_measures_against_it(budget_app, receiver):
    finance = _signed_in(budget_app, "finance")
    html = finance.get("/billing").get_data(as_text=True)
    assert "No budget is set." in html
    used = _used_this_period(html)
    budget = (used * 4).quantize(Decimal("1"))  # about 25 %: no threshold crossed
    answer = finance.post("/alerts/budget", data={"amount": str(budget), "basis": "period",
                                                  "spike_sensitivity": "high"})
    assert answer.status_code == 303
    html = finance.get("/billing").get_data(as_text=True)
    words = re.search(r'id="budget-words"><strong>([^<]+)<', html).group(1)
    assert words.startswith(f"{int(used / budget * 100)} % used · on pace for ")
    assert f'id="budget-used">${used:,.2f}' in html
    assert f'id="budget-amount">${budget:,.2f}' in html
    assert "A budget does not stop usage" in html
    assert 'class="budget-line"' in html  # the chart draws the budget's share a day
    with budget_app.app_context():
        entry = AuditEntry.query.filter_by(action="budget saved").one()
        assert entry.user_email == "finance@demo.test"
        assert entry.detail == (f"from: no budget; spike alerts medium → to: budget "
                                f"${budget:,.2f} a plan period; spike alerts high")
        deliver_all(budget_app)
    assert [w for w in _webhooks(receiver) if w["rule"].startswith("budget")] == []


def test_lowering_the_budget_below_what_is_spent_fires_one_alert_at_once(budget_app, receiver):
    finance = _signed_in(budget_app, "finance")
    used = _used_this_period(finance.get("/billing").get_data(as_text=True))
    low = (used / 2).quantize(Decimal("1"))
    finance.post("/alerts/budget", data={"amount": str(low), "basis": "period",
                                         "spike_sensitivity": "medium"})
    deliver_all(budget_app)
    budget_alerts = [w for w in _webhooks(receiver) if w["rule"] == "budget"]
    assert [w["title"] for w in budget_alerts] == ["100% of the budget used"]
    text = budget_alerts[0]["text"]
    assert f"of the ${low:,.2f} budget" in text and "A budget does not stop usage" in text
    assert "https://billing.example.com/billing#topup" in text
    assert "https://billing.example.com/billing#plans-title" in text
    finance.get("/billing")  # the next reading: said already this period
    deliver_all(budget_app)
    assert len([w for w in _webhooks(receiver) if w["rule"] == "budget"]) == 1


@pytest.mark.parametrize("typed, message", [
    ("-50", "Enter a positive amount. From $1.00 to $10,000,000.00, in dollars and cents."),
    ("lots", "Enter the amount as a number, like 50 or 12.50."),
    ("99999999", "The largest budget is $10,000,000.00."),
    ("1e9", "Write the amount in plain digits, like 50 or 12.50 (no exponents)."),
    ("0.50", "The smallest budget is $1.00."),
])
def test_a_bad_budget_gets_a_message_by_the_field_and_changes_nothing(budget_app, typed,
                                                                     message):
    admin = _signed_in(budget_app, "admin")
    answer = admin.post("/alerts/budget", data={"amount": typed, "basis": "period",
                                                "spike_sensitivity": "medium"})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    error = re.search(r'id="amount-error">(.*?)</p>', html, re.S).group(1)
    assert message in error
    with budget_app.app_context():
        assert db.session.get(BudgetSettings, 1) is None
        assert AuditEntry.query.filter_by(action="budget saved").count() == 0


def test_an_unknown_sensitivity_or_window_is_refused_by_its_field(budget_app):
    admin = _signed_in(budget_app, "admin")
    answer = admin.post("/alerts/budget", data={"amount": "100", "basis": "week",
                                                "spike_sensitivity": "extreme"})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Choose low, medium or high." in re.search(
        r'id="spike_sensitivity-error">(.*?)</p>', html, re.S).group(1)
    assert "Choose a plan period or a calendar month." in html
    with budget_app.app_context():
        assert db.session.get(BudgetSettings, 1) is None


def test_a_viewer_may_not_set_a_budget(budget_app):
    viewer = _signed_in(budget_app, "viewer")
    answer = viewer.post("/alerts/budget", data={"amount": "100", "basis": "period",
                                                 "spike_sensitivity": "medium"})
    assert answer.status_code == 403
    with budget_app.app_context():
        assert db.session.get(BudgetSettings, 1) is None


def test_the_poller_alone_sends_each_budget_threshold_once_and_the_forecast_once(
        tmp_path, sandbox, receiver):
    """Nobody looking: ``flask billing poll`` a step at a time, the sandbox's usage moving
    on between polls (12 days into its period, 25.50 of 100 plan credits used)."""
    env = {"GIGA_API_URL": sandbox.url, "GIGA_API_KEY": sandbox.api_key,
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'poll.db'}",
           "ALERT_WEBHOOK_URL": receiver.url, "ALERT_POLL_WAIT": "10",
           "BILLING_CACHE_TTL": "0", "REDIS_URL": ""}
    app = make_app(tmp_path, **{k: env[k] for k in ("GIGA_API_URL", "GIGA_API_KEY",
                                                     "DATABASE_URL")})
    with app.app_context():
        db.session.add(BudgetSettings(id=1, amount=Decimal("50"), basis="period",
                                      spike_sensitivity="medium"))
        db.session.commit()

    def poll(left):
        with sandbox.state.edit() as account:
            account["planCreditsRemaining"] = left
        result = flask(env, "billing", "poll")
        assert result.returncode == 0, result.stderr

    def said():
        return [w["title"] for w in _webhooks(receiver) if w["rule"].startswith("budget")]

    poll("74.50")  # 25.50 used: 51 %; the period's pace says 127 % (first reading)
    assert said() == ["50% of the budget used"]
    poll("74.40")  # over on a second reading in a row: the forecast alert
    assert said() == ["50% of the budget used", "Forecast over budget"]
    poll("74.30")  # still over: said already
    poll("59.00")  # 41 used: 82 %
    poll("49.00")  # 51 used: 102 %
    poll("48.00")
    assert said() == ["50% of the budget used", "Forecast over budget",
                      "80% of the budget used", "100% of the budget used"]
    forecast = next(w for w in _webhooks(receiver) if w["rule"] == "budget forecast")
    assert "against a $50.00 budget" in forecast["text"]
    assert "A budget does not stop usage" in forecast["text"]


def test_the_forecast_must_be_over_on_two_readings_in_a_row(app):
    """``held_twice``: a reading under budget starts the count again; a reading checked a
    second time (another process) or late (older than the newest) counts for nothing."""
    from webapp.services.alerting.rules import held_twice

    t = datetime(2027, 3, 10, tzinfo=timezone.utc)
    with app.app_context():
        seen = [held_twice("period:x", over, t + timedelta(minutes=i))
                for i, over in enumerate([True, False, True])]
        assert seen == [False, False, False]
        assert held_twice("period:x", True, t + timedelta(minutes=2)) is False  # the same
        assert held_twice("period:x", True, t + timedelta(minutes=1)) is False  # older
        assert held_twice("period:x", True, t + timedelta(minutes=3)) is True
        assert held_twice("period:other", True, t + timedelta(minutes=4)) is False  # its own


def test_a_budget_without_the_plan_list_says_it_cannot_be_measured(fault_server, fault_app,
                                                                   fault_client):
    """The period's "used" comes from the forecast, which needs the plan list: while it
    cannot be read, the card names the budget and says why there is no figure, rather
    than "No budget is set"."""
    from .support.faultserver import BILLING, error, ok

    fault_server.handler = lambda method, path, body: (
        error(503, "unavailable") if path.endswith("/plans") else ok(BILLING))
    with fault_app.app_context():
        db.session.add(_row("250"))
        db.session.commit()
    html = fault_client.get("/billing").get_data(as_text=True)
    card = re.search(r'<section class="card budget".*?</section>', html, re.S).group(0)
    assert "The budget, $250.00 a plan period, cannot be measured just now" in card
    assert "No budget is set" not in card
