"""The run-out forecast against cases worked by hand from the contract's rules: usage
draws plan credits first and prepaid after; plan credits come back to the plan's
monthly credits at each period's end; prepaid credit never expires."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from webapp.giga import Billing, Plan
from webapp.services.forecast import HORIZON, forecast

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = START + timedelta(days=30)
STARTER_PRO = Plan("starter-pro", "Starter Pro", D(100), D(5), D(8), D(29))


def _billing(plan_credits, prepaid, plan="starter-pro"):
    return Billing(plan, D(plan_credits), D(prepaid), D(plan_credits) + D(prepaid), START, END)


def test_an_allowance_that_covers_the_pace_never_runs_out():
    # the demo account: $74.50 of 100 left, $50 prepaid, 12 days in: $25.50 / 12 a day
    f = forecast(_billing("74.50", "50"), STARTER_PRO, START + timedelta(days=12))
    assert f.pace_per_day == D("2.125")
    assert f.balance_runs_out is None and f.never_runs_out and f.lasts_past_period
    assert f.use_per_period == D("63.75") and f.allowance == D(100)  # "$63.75 of $100.00"
    assert f.prepaid_this_period == 0 and f.plan_credits_run_out is None


def test_a_balance_that_runs_out_within_this_period():
    # $6 a day, 10 days in: 40 plan credits and 10 prepaid last 50 / 6 days
    now = START + timedelta(days=10)
    f = forecast(_billing("40", "10"), STARTER_PRO, now)
    assert f.pace_per_day == D(6) and not f.lasts_past_period
    assert f.plan_credits_run_out == now + timedelta(seconds=int(D(40) / 6 * 86400))
    assert f.balance_runs_out == now + timedelta(seconds=int(D(50) / 6 * 86400))
    assert f.days_past_period_end < 0 and not f.never_runs_out


def test_a_balance_that_runs_out_several_periods_ahead():
    # the case: 4 a day on Starter Pro, 10 days into a 30-day period, $50
    # prepaid. This period: 80 more used, 60 plan credits, so 20 prepaid (30 left).
    # Each later period: 120 used, 100 plan credits, 20 prepaid. The next period
    # leaves 10; the one after uses its 100 plan credits (25 days) and the last 10
    # prepaid (2.5 days): 20 + 30 + 27.5 = 77.5 days from now.
    now = START + timedelta(days=10)
    f = forecast(_billing("60", "50"), STARTER_PRO, now)
    assert f.pace_per_day == D(4)
    assert f.balance_runs_out == now + timedelta(days=77, hours=12)
    assert f.prepaid_this_period == D(20) and f.prepaid_per_period == D(20)
    assert f.plan_credits_run_out == now + timedelta(days=15)
    assert f.lasts_past_period and not f.never_runs_out
    assert f.days_past_period_end == 57


def test_prepaid_drawn_this_period_then_the_allowance_covers_the_pace():
    # a slow pace observed, but this period's plan credits are nearly gone already
    from webapp.services.history.usage import Pace

    now = START + timedelta(days=20)
    f = forecast(_billing("5", "50"), STARTER_PRO, now,
                 observed=Pace(per_day=D(2), days=D(7), basis="the last 7 days of readings"))
    assert f.balance_runs_out is None and f.never_runs_out
    assert f.plan_credits_run_out == now + timedelta(days=2, hours=12)
    assert f.prepaid_this_period == D(15)  # 10 days at 2 a day, 5 of it plan credits


def test_an_exact_fit_runs_out_when_the_last_period_overdraws():
    # 4 a day, 30 days: 120 a period, 20 over the allowance; 40 prepaid after this
    # period covers two periods exactly, so the balance is gone 25 days into the third
    now = END - timedelta(days=1)
    f = forecast(_billing("4", "40"), STARTER_PRO, now,
                 observed=_pace(4))
    assert f.balance_runs_out == END + timedelta(days=60 + 25)


def test_a_huge_prepaid_balance_lasts_past_the_horizon():
    now = START + timedelta(days=10)
    f = forecast(_billing("60", "1000000000"), STARTER_PRO, now)
    assert f.balance_runs_out is None and not f.never_runs_out and f.lasts_past_period
    assert HORIZON == timedelta(days=3650)


def test_a_custom_plan_says_why_there_is_no_forecast():
    custom = Plan("max", "Max", "custom", "unlimited", D(24), "custom")
    f = forecast(_billing("90", "0", plan="max"), custom, START + timedelta(days=3))
    assert f.pace_per_day is None and "custom" in f.reason
    assert f.balance_runs_out is None


def test_a_plan_change_mid_period_plays_the_new_allowance_forward():
    # upgraded to Pro (500 a period) with 480 of its credits left, 20 days to go, 30 a
    # day: this period needs 600 (480 plan + 120 prepaid of 200); each later period
    # 900, 400 over: the 80 prepaid left are gone 500/30 + 80/30 days into the next
    pro = Plan("pro", "Pro", D(500), D(20), D(24), D(99))
    now = START + timedelta(days=10)
    f = forecast(_billing("480", "200", plan="pro"), pro, now, observed=_pace(30))
    assert f.prepaid_this_period == D(120)
    assert f.balance_runs_out == END + timedelta(seconds=int(D(580) / 30 * 86400))


def _pace(per_day):
    from webapp.services.history.usage import Pace

    return Pace(per_day=D(per_day), days=D(7), basis="the last 7 days of readings")
