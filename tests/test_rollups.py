"""Usage worked out once per quarter hour: days in any zone built from the quarter hours
agree with days built from the readings themselves, to the cent, on random histories
(resets, top-ups, plan changes, gaps, unknowns, late readings) and across both clock
changes of two zones and a +05:45 one; and the quarter hours a recording keeps are
what a rebuild from the readings makes, however recordings race."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.extensions import db
from webapp.giga import Billing, Plan
from webapp.models import (AuditEntry, BalanceSnapshot, UsageInterval, UsageQuarter,
                           UsageState)
from webapp.sandbox.state import PLANS
from webapp.services.history import rollups
from webapp.services.history.readings import record, rebuild_usage
from webapp.services.history.report import RANGES, PlanBook, observed_pace, usage_report
from webapp.services.history.rollups import Grid, quarter_of
from webapp.services.history.usage import Snapshot, daily, day_start, intervals, local_day

from .conftest import make_app
from .support.postgres import emptied_postgres
from .support.raw_usage import raw_pace, raw_report

D = Decimal
UTC = ZoneInfo("UTC")
LA, BERLIN, KATHMANDU = (ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/Berlin"),
                         ZoneInfo("Asia/Kathmandu"))
ZONES = (UTC, LA, BERLIN, KATHMANDU)
PLAN_LIST = [Plan(p["id"], p["name"],
                  D(p["monthlyCredits"]) if isinstance(p["monthlyCredits"], int)
                  else p["monthlyCredits"], p["concurrentAgents"], p["maxDurationHours"],
                  p["price"]) for p in PLANS]
BOOK = PlanBook(PLAN_LIST)
#: instants just after a clock change: a history before them straddles it
AFTER_CHANGES = (datetime(2026, 3, 9, 17, 5, tzinfo=timezone.utc),    # LA springs forward
                 datetime(2026, 3, 30, 9, 40, tzinfo=timezone.utc),   # Berlin springs forward
                 datetime(2026, 10, 26, 3, 20, tzinfo=timezone.utc),  # Berlin falls back
                 datetime(2026, 11, 2, 20, 50, tzinfo=timezone.utc))  # LA falls back


# -- the bucketing ----------------------------------------------------------------------

@pytest.mark.parametrize("zone,spring,fall", [
    (LA, date(2026, 3, 8), date(2026, 11, 1)), (BERLIN, date(2026, 3, 29), date(2026, 10, 25))])
def test_a_day_the_clocks_change_is_23_or_25_hours_from_midnight_to_midnight(zone, spring,
                                                                              fall):
    def hours(d):
        return (day_start(d + timedelta(days=1), zone) - day_start(d, zone)) / timedelta(hours=1)
    assert (hours(spring - timedelta(days=1)), hours(spring), hours(fall), hours(fall +
            timedelta(days=1))) == (24, 23, 25, 24)
    assert day_start(spring, zone).astimezone(zone).hour == 0  # midnight, localised
    # every instant is in the day whose localised midnights bound it
    for d in (spring, fall):
        start, end = day_start(d, zone), day_start(d + timedelta(days=1), zone)
        assert local_day(start, zone) == d and local_day(end - timedelta(seconds=1), zone) == d
        assert local_day(end, zone) == d + timedelta(days=1)


def test_a_quarter_hour_zone_buckets_exactly():
    d = date(2026, 6, 1)
    start = day_start(d, KATHMANDU)
    assert start == datetime(2026, 5, 31, 18, 15, tzinfo=timezone.utc)
    assert quarter_of(start) * 900 == start.timestamp()  # a whole quarter hour


@pytest.mark.parametrize("zone", ZONES, ids=lambda z: z.key)
def test_the_database_buckets_each_quarter_hour_in_the_day_python_does(app, zone):
    """The grouped query's day (``Grid.ordinal``: a division per run of 24-hour days, a
    constant for a day the clocks change on) is the day of every quarter hour of a
    year, both changes included."""
    grid = Grid(date(2026, 1, 1), date(2026, 12, 31), zone)
    quarters = sa.table("q", sa.column("n", sa.Integer))
    with app.app_context():
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TEMP TABLE q (n INTEGER)")
            conn.execute(quarters.insert(), [{"n": n} for n in range(grid.starts[0],
                                                                     grid.starts[-1])])
            found = dict(conn.execute(sa.select(quarters.c.n, grid.ordinal(quarters.c.n))).all())
    wrong = [(n, d) for n, d in found.items() if date.fromordinal(d) != grid.day(n)]
    assert wrong == []
    assert grid.day(grid.starts[0] - 1) is None and grid.day(grid.starts[-1]) is None


def _snap(at, left, prepaid="50", start=datetime(2026, 3, 1, tzinfo=timezone.utc), **kw):
    return Snapshot(at, kw.get("to", at), "starter-pro", D(left), D(prepaid),
                    D(left) + D(prepaid), start, start + timedelta(days=30))


@pytest.mark.parametrize("now", [datetime(2026, 3, 12, tzinfo=timezone.utc),
                                 datetime(2026, 11, 4, tzinfo=timezone.utc),
                                 datetime(2026, 4, 2, tzinfo=timezone.utc)])
def test_totals_are_the_same_whatever_the_zone(now):
    """A week of readings every 20 minutes over a clock change: each zone buckets them
    into its own days (23- and 25-hour ones among them) and the total stays."""
    readings, left, t = [], D(100), now - timedelta(days=9)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc) if now.month < 10 else \
        datetime(2026, 10, 20, tzinfo=timezone.utc)
    while t < now - timedelta(days=1):
        readings.append(_snap(t, left, start=start))
        left -= D("0.07")
        t += timedelta(minutes=20)
    spans = intervals(readings, BOOK.monthly_credits)
    totals = {}
    for zone in ZONES:
        today = local_day(now, zone)
        days = daily(readings, spans, today - timedelta(days=29), today, zone=zone)
        totals[zone.key] = sum(d.usage for d in days if d.usage is not None)
        assert sorted({d.hours for d in days}) in ([24], [23, 24], [24, 25])
    assert set(totals.values()) == {D("0.07") * (len(readings) - 1)}


# -- rollups against the readings, on random histories -----------------------------------

STEP = st.one_of(st.integers(1, 30), st.integers(31, 240), st.integers(361, 2000))
ACTION = st.sampled_from(["use", "use", "use", "use", "same", "top-up", "known top-up",
                          "drain", "plan change", "credits added", "late"])


@st.composite
def histories(draw):
    steps = draw(st.lists(st.tuples(STEP, ACTION, st.integers(1, 900)), min_size=2,
                          max_size=45))
    return dict(steps=steps, now=draw(st.sampled_from(AFTER_CHANGES)),
                length=timedelta(days=draw(st.integers(2, 12)), hours=draw(st.integers(0, 23))),
                page=draw(st.sampled_from(["same", "new"])))


class Account:
    """An account whose balance moves step by step, by the contract's rules."""

    def __init__(self, start: datetime, length: timedelta):
        self.plan, self.left, self.prepaid = "starter-pro", D(100), D(50)
        self.start, self.length = start, length

    def billing(self) -> Billing:
        return Billing(self.plan, self.left, self.prepaid, self.left + self.prepaid,
                       self.start, self.start + self.length)

    def at(self, when: datetime) -> None:
        """The period moves on when its end has passed: plan credits granted again."""
        while when >= self.start + self.length:
            self.start += self.length
            self.left = BOOK.monthly_credits(self.plan)

    def use(self, amount: Decimal) -> None:
        drawn = min(self.left, amount)
        self.left -= drawn
        self.prepaid = max(D(0), self.prepaid - (amount - drawn))


def _write_history(app, history) -> datetime:
    """Record ``history``'s readings one by one (as pages and pollers would), the quarter
    hours worked out as they go; returns the newest reading's time."""
    now = history["now"]
    total = sum(minutes for minutes, _, _ in history["steps"])
    t = now - timedelta(minutes=total + 7)
    account = Account(t - history["length"] / 3, history["length"])
    newest = t
    with app.app_context():
        for minutes, action, cents in history["steps"]:
            t += timedelta(minutes=minutes)
            account.at(t)
            amount = D(cents) / 100
            if action == "use":
                account.use(amount)
            elif action == "drain":  # plan credits gone, prepaid drawn
                account.use(account.left + amount / 10)
            elif action in ("top-up", "known top-up"):
                account.use((amount / 7).quantize(D("0.000001")))
                account.prepaid += amount
                if action == "known top-up":
                    db.session.add(AuditEntry(at=t - timedelta(minutes=2), user_email="f@x.y",
                                              user_role="finance", action="top-up",
                                              amount=amount.quantize(D("0.01")),
                                              outcome="sent to checkout"))
                    db.session.commit()
            elif action == "plan change":
                account.plan = "pro" if account.plan == "starter-pro" else "starter-pro"
                account.left = BOOK.monthly_credits(account.plan)
            elif action == "credits added":
                account.left += amount
            if action == "late":  # read before the newest, recorded after it
                late = replace(account.billing(), plan_credits_remaining=account.left + 1,
                               total_balance=account.left + 1 + account.prepaid)
                record(late, newest - timedelta(seconds=cents % 300 + 1), keep_days=400)
                continue
            record(account.billing(), t, keep_days=400)
            newest = t
        page = account.billing()
        if history["page"] == "new":
            account.use(D("0.33"))
            page = account.billing()
    return page


def _agree(app, page: Billing, now: datetime) -> None:
    """Every range in every zone, and the pace, the same from the rollups as from the
    readings."""
    with app.app_context():
        for zone in ZONES:
            for key in RANGES:
                report = usage_report(key, page, now, BOOK, read_at=now, zone=zone)
                days, gaps, whole, changed = raw_report(key, page, now, BOOK, read_at=now,
                                                        zone=zone)
                assert (report.days, report.gaps, report.whole, report.plan_changed) == \
                    (days, gaps, whole, changed), (zone.key, key)
            assert observed_pace(now, BOOK, page, read_at=now, zone=zone) == \
                raw_pace(now, BOOK, page, read_at=now, zone=zone), zone.key


def _kept(app) -> tuple[list, list]:
    with app.app_context():
        quarters = db.session.execute(sa.select(UsageQuarter.__table__).order_by(
            UsageQuarter.quarter, UsageQuarter.period_start)).all()
        apart = db.session.execute(sa.select(
            *(c for c in UsageInterval.__table__.c if c.key != "id"))
            .order_by(UsageInterval.ends_at, UsageInterval.starts_at)).all()
        return quarters, apart


def _emptied(app) -> None:
    with app.app_context():
        for model in (AuditEntry, BalanceSnapshot):
            db.session.execute(sa.delete(model))
        rebuild_usage()
        db.session.commit()


@pytest.fixture(scope="module")
def history_app(tmp_path_factory):
    return make_app(tmp_path_factory.mktemp("rollups"), GIGA_API_KEY="giga_sk_rollups")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_days_from_quarter_hours_are_days_from_readings_to_the_cent(history_app, history):
    app = history_app
    _emptied(app)
    page = _write_history(app, history)
    _agree(app, page, history["now"])
    # and what the recordings kept is what a rebuild from the readings makes
    kept = _kept(app)
    with app.app_context():
        rebuild_usage()
        db.session.commit()
    assert _kept(app) == kept


def test_a_history_older_than_the_quarter_hours_kept_is_dropped_with_them(app):
    """Readings older than HISTORY_DAYS go, and their quarter hours with them: what is
    left reads as the readings left do."""
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    account = Account(now - timedelta(days=45), timedelta(days=30))
    with app.app_context():
        _emptied(app)
        t = now - timedelta(days=40)
        while t < now - timedelta(hours=1):
            account.at(t)
            account.use(D("0.2"))
            record(account.billing(), t, keep_days=400)
            t += timedelta(hours=3)
        account.use(D("0.2"))
        record(account.billing(), t, keep_days=20)  # a shorter retention drops the oldest
        oldest = db.session.scalar(sa.select(sa.func.min(BalanceSnapshot.first_seen_at)))
        assert oldest > now - timedelta(days=21)
    kept = _kept(app)
    assert min(q.quarter for q in kept[0]) == quarter_of(oldest)
    _agree(app, account.billing(), now)
    with app.app_context():
        rebuild_usage()
        db.session.commit()
    assert _kept(app) == kept


# -- racing recordings ---------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path):
    if request.param == "postgresql":
        return emptied_postgres()
    return f"sqlite:///{tmp_path / 'shared.db'}"


def test_racing_recordings_keep_each_quarter_hour_once_and_right(tmp_path, sandbox, shared_url):
    """Three processes record readings read around quarter-hour boundaries, all at once
    (a barrier releases them), each with its own time: the slower ones' readings arrive
    after a newer one closed the quarter hour they were read in. What they keep is
    what a rebuild from the readings makes, and the days read as the readings do."""
    apps = [make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=shared_url) for _ in range(3)]
    _emptied(apps[0])
    account = Account(datetime(2026, 11, 1, tzinfo=timezone.utc), timedelta(days=30))
    boundary = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    for trial in range(12):
        edge = boundary + timedelta(minutes=15 * trial)
        barrier = threading.Barrier(len(apps))
        readings = []
        for i in range(len(apps)):
            account.use(D("0.25") * (i + 1))
            readings.append((account.billing(), edge + timedelta(seconds=20 * i - 25)))
        errors = []

        def go(app, billing, seen_at):
            with app.app_context():
                barrier.wait()
                try:
                    record(billing, seen_at, keep_days=400)
                except Exception as exc:  # noqa: BLE001 -- the test reports it
                    errors.append(exc)
        # the newest-read reading goes first in some trials, last in others
        order = list(zip(apps, readings))
        order = order[::-1] if trial % 2 else order
        threads = [threading.Thread(target=go, args=(app, b, at)) for app, (b, at) in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    with apps[0].app_context():
        reached = db.session.scalar(sa.select(UsageState.through))
        newest = db.session.scalar(sa.select(sa.func.max(BalanceSnapshot.last_seen_at)))
        assert reached == rollups.quarter_start(quarter_of(newest))
    kept = _kept(apps[0])
    assert kept[0]  # quarter hours were kept as the recordings went
    now = boundary + timedelta(hours=5)
    _agree(apps[0], account.billing(), now)
    with apps[0].app_context():
        rebuild_usage()
        db.session.commit()
    assert _kept(apps[0]) == kept


# -- rebuilt from the readings ---------------------------------------------------------------

def test_readings_imported_by_hand_are_worked_out_by_rebuild_usage(app, runner):
    """Readings put in the database by hand (a restore, an import) behind the quarter
    hours kept are not in them until ``flask billing rebuild-usage`` works them out."""
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    account = Account(now - timedelta(days=20), timedelta(days=30))
    with app.app_context():
        _emptied(app)
        t = now - timedelta(days=3)
        while t < now - timedelta(minutes=30):
            account.use(D("0.75"))
            record(account.billing(), t, keep_days=400)
            t += timedelta(hours=2)
        for day in range(4, 9):  # an import: five days' readings before the first kept
            db.session.add(BalanceSnapshot(
                first_seen_at=now - timedelta(days=day), last_seen_at=now - timedelta(days=day),
                plan="starter-pro", plan_credits_remaining=D(100) - day,
                prepaid_balance=D(50), total_balance=D(150) - day,
                period_start=account.start, period_end=account.start + account.length))
        db.session.commit()

        def both():
            report = usage_report("30", account.billing(), now, BOOK, read_at=now, zone=LA)
            days, *_ = raw_report("30", account.billing(), now, BOOK, read_at=now, zone=LA)
            return report.days, days
        kept, raw = both()
        assert kept != raw  # the imported days are not in the quarter hours kept
    result = runner.invoke(args=["billing", "rebuild-usage"])
    assert result.exit_code == 0, result.output
    assert "Usage rebuilt from the readings:" in result.output
    with app.app_context():
        kept, raw = both()
        assert kept == raw and sum(d.usage or 0 for d in kept) > D("4")
