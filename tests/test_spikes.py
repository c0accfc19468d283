"""The spend-spike rule on made-up histories of hours, then through the app: a spike seeded
into the sandbox, read at once by three pollers and a page view on each of three servers
on Redis; and ``flask sandbox spike``, as the README walks through it."""
from __future__ import annotations

import json
import re
import secrets
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
import requests

from webapp.extensions import db
from webapp.models import BalanceSnapshot
from webapp.services.history.readings import rebuild_usage
from webapp.services.spikes import HOUR, Hour, episodes, is_spike
from webapp.services.users import create_user

from .conftest import make_app
from .support.processes import Gunicorn, flask

UTC = ZoneInfo("UTC")
NOW = datetime(2027, 3, 20, 14, 40, tzinfo=timezone.utc)  # 40 minutes into 14:00
LEAST = D(2)


def _flat(days=9, per_hour=D("1.20"), quarters=4):
    """Every hour for ``days`` days before NOW's hour at ``per_hour``."""
    top = NOW.replace(minute=0)
    return {top - HOUR * i: Hour(top - HOUR * i, per_hour, quarters)
            for i in range(1, days * 24 + 1)}


def _with(hours, **usage_by_hours_ago):
    """``hours`` with the hour ``n`` hours before NOW's (``h0`` is NOW's own, 40 minutes
    in) at the usage given."""
    out = dict(hours)
    top = NOW.replace(minute=0)
    for name, usage in usage_by_hours_ago.items():
        start = top - HOUR * int(name[1:])
        out[start] = Hour(start, D(usage), 3 if name == "h0" else 4)
    return out


def _told(hours, sensitivity="medium"):
    return [(t.hour.start, t.doubling) for t in episodes(hours, NOW, sensitivity, LEAST, UTC)]


def test_a_flat_week_then_a_spike_fires_once():
    top = NOW.replace(minute=0)
    assert _told(_with(_flat(), h1="8.20")) == [(top - HOUR, False)]
    # the spike over, the next hour back to usual: still the one alert
    assert _told(_with(_flat(), h1="8.20", h0="0.80")) == [(top - HOUR, False)]


def test_the_hour_not_over_yet_fires_as_soon_as_it_is_a_spike():
    top = NOW.replace(minute=0)
    told = episodes(_with(_flat(), h0="6.00"), NOW, "medium", LEAST, UTC)
    assert [(t.hour.start, t.running) for t in told] == [(top, True)]


def test_a_slow_rise_does_not_fire():
    top = NOW.replace(minute=0)
    hours = {}
    for i in range(1, 9 * 24 + 1):  # 1 % more each day: today's hour is 1.07 × a week ago
        start = top - HOUR * i
        hours[start] = Hour(start, (D("1.20") * D("1.01") ** (9 - i // 24)).quantize(
            D("0.01")), 4)
    assert _told(hours, "high") == []


def test_a_zero_baseline_never_fires():
    assert _told(_with(_flat(per_hour=D(0)), h1="50.00"), "high") == []


def test_a_quiet_accounts_hour_below_the_least_amount_never_fires():
    # 40 times a usual of 2 cents is 80 cents: below the $2.00 an alert needs
    assert _told(_with(_flat(per_hour=D("0.02")), h1="0.80"), "high") == []


def test_an_episode_fires_once_and_a_doubling_fires_a_second_time():
    top = NOW.replace(minute=0)
    assert _told(_with(_flat(), h4="8.00", h3="9.00", h2="12.00")) == [(top - 4 * HOUR, False)]
    assert _told(_with(_flat(), h4="8.00", h3="9.00", h2="16.00", h1="20.00")) == [
        (top - 4 * HOUR, False), (top - 2 * HOUR, True)]


def test_none_for_six_hours_after_an_episode():
    top = NOW.replace(minute=0)
    # told at h9, over at h8; a new spike at h5 is within 6 hours: not told
    assert _told(_with(_flat(), h9="8.00", h5="8.00")) == [(top - 9 * HOUR, False)]
    # at h2 it is 6 hours after the episode ended: told
    assert _told(_with(_flat(), h9="8.00", h2="8.00")) == [(top - 9 * HOUR, False),
                                                            (top - 2 * HOUR, False)]


def test_hours_with_too_few_readings_are_skipped_never_guessed():
    top = NOW.replace(minute=0)
    spiky = _with(_flat(), h1="8.20")
    spiky[top - HOUR] = Hour(top - HOUR, D("8.20"), 2)  # 2 of its 4 quarter hours read
    assert _told(spiky) == []
    thin = _with(_flat(), h1="8.20")
    for days in (1, 2, 3):  # the same hour on 3 of the 7 days before unread: 4 are left
        start = top - HOUR - timedelta(days=days)
        thin[start] = Hour(start, D("1.20"), 1)
    assert _told(thin) == []


def test_sensitivity_sets_how_far_above_usual_an_hour_must_be():
    baseline = [D("1.00"), D("1.20"), D("1.40"), D("1.10"), D("1.30"), D("1.20"), D("1.25")]
    # median 1.20, MAD 0.10: usual + 3 (high) / 4 (medium) / 6 (low) robust deviations
    # = 1.64 / 1.79 / 2.09; twice the usual, 2.40, and the least, $2.00, above them all
    assert is_spike(D("2.40"), baseline, "high", D("0.50")).spike
    assert is_spike(D("2.40"), baseline, "low", D("0.50")).spike
    wide = [D("1.00"), D("0.20"), D("2.40"), D("1.10"), D("0.40"), D("2.00"), D("1.20")]
    # median 1.10, MAD 0.70: 4.21 (high), 5.25 (medium), 7.32 (low)
    assert is_spike(D("5.00"), wide, "high", D("0.50")).spike
    assert not is_spike(D("5.00"), wide, "medium", D("0.50")).spike
    assert not is_spike(D("5.00"), wide, "low", D("0.50")).spike
    assert is_spike(D("5.00"), baseline[:4], "high", D("0.50")) is None  # too few days


def _dense_week(app, sandbox, *, days=8, every=timedelta(minutes=5), per_reading=D("0.01")):
    """Readings every 5 minutes for ``days`` days ending a minute ago, a cent each (12
    cents an hour), ending at the sandbox's balance now: a week of quiet hours told by
    the readings."""
    account = sandbox.state.billing()
    start = datetime.fromisoformat(account["currentPeriodStart"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(account["currentPeriodEnd"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    left, prepaid = account["planCreditsRemaining"], account["prepaidBalance"]
    rows, t = [], now
    while t > now - timedelta(days=days):
        rows.append(BalanceSnapshot(first_seen_at=t, last_seen_at=t, plan=account["plan"],
                                    plan_credits_remaining=left, prepaid_balance=prepaid,
                                    total_balance=left + prepaid, period_start=start,
                                    period_end=end))
        left, t = left + per_reading, t - every
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()
        rebuild_usage()
        db.session.commit()


def _signed_in(base: str) -> requests.Session:
    """A viewer signed in to the server at ``base``, as a browser does (CSRF on)."""
    session = requests.Session()
    page = session.get(base + "/signin", timeout=10).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    answer = session.post(base + "/signin", data={"email": "eyes@example.com",
                                                  "password": "violet-anchor-meadow-42",
                                                  "csrf_token": token}, timeout=10)
    assert answer.url.endswith("/billing"), answer.status_code
    return session


def test_a_spike_seeded_into_the_sandbox_fires_one_alert_across_three_servers_on_redis(
        tmp_path, sandbox, receiver, redis_server):
    env = {"GIGA_API_URL": sandbox.url, "GIGA_API_KEY": sandbox.api_key,
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'spikes.db'}",
           "ALERT_WEBHOOK_URL": receiver.url, "ALERT_SEND_EVERY": "1",
           "ALERT_POLL_WAIT": "10", "BILLING_CACHE_TTL": "0", "REDIS_URL": redis_server.url,
           "SPIKE_MIN_AMOUNT": "1"}
    app = make_app(tmp_path, **{k: env[k] for k in ("GIGA_API_URL", "GIGA_API_KEY",
                                                     "DATABASE_URL")})
    _dense_week(app, sandbox)
    with app.app_context():
        create_user("eyes@example.com", "viewer", "violet-anchor-meadow-42")
    servers = [Gunicorn(env, tmp_path / "gunicorn.log") for _ in range(3)]
    try:
        quiet = flask(env, "billing", "poll")  # a usual hour: nothing
        assert quiet.returncode == 0, quiet.stderr
        assert "spike" not in quiet.stdout.lower()
        viewers = [_signed_in(server.base) for server in servers]
        sandbox.state.spend(D("6.00"))  # a runaway agent: $6 within minutes
        results, pages = [], []
        readers = [threading.Thread(target=lambda: results.append(flask(env, "billing", "poll")))
                   for _ in range(3)]
        readers += [threading.Thread(target=lambda v=v, s=s: pages.append(
            v.get(s.base + "/billing", timeout=30).status_code))
            for v, s in zip(viewers, servers)]
        for p in readers:
            p.start()
        for p in readers:
            p.join()
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert pages == [200, 200, 200]
        threading.Event().wait(2.5)  # the servers' senders take their turn
        sandbox.state.spend(D("0.50"))  # the episode goes on, not doubled: nothing new
        assert flask(env, "billing", "poll").returncode == 0
    finally:
        for server in servers:
            server.stop()
    spikes = [json.loads(body) for _, body in receiver.received
              if json.loads(body)["rule"] == "spend spike"]
    assert len(spikes) == 1, [s["text"] for s in spikes]
    text = spikes[0]["text"]
    assert "against a usual $0.12" in text
    # the $6.00 spent at once, and the hour's quiet cent every 5 minutes so far (the
    # hour may be up to an hour old when the test runs: at most 12 of them)
    so_far = D(re.search(r"\$(\d+\.\d\d) so far", text).group(1))
    assert D("6.00") <= so_far <= D("6.12"), text
    assert "at this pace the balance runs out" in text


def test_flask_sandbox_spike_makes_a_spike_alert_arrive(own_sandbox):
    """The README's walk-through: the sandbox's seeded week, a runaway agent, a page
    view, and one spend-spike alert on the Alerts page."""
    from webapp.models import Alert

    from .conftest import deliver_all

    app, client, runner = own_sandbox
    for bad in (["--per-hour", "lots"], ["--per-hour", "-5"], ["--minutes", "0"]):
        assert runner.invoke(args=["sandbox", "spike", *bad]).exit_code == 2
    client.get("/billing")
    result = runner.invoke(args=["sandbox", "spike", "--per-hour", "3600"])
    assert result.exit_code == 0, result.output
    assert "now burn $3,600.00 an hour more until" in result.output
    time_to_burn = threading.Event()
    time_to_burn.wait(3)  # $1 a second: $3 or so
    client.get("/billing")
    deliver_all(app)
    with app.app_context():
        spikes = Alert.query.filter_by(rule="spend spike").all()
    assert len(spikes) == 1
    assert spikes[0].title.startswith("Spend spike: $")
    page = client.get("/alerts").get_data(as_text=True)
    assert "Spend spike: $" in page and "against a usual" in page
    client.get("/billing")  # the same episode on the next reading: nothing new
    with app.app_context():
        assert Alert.query.filter_by(rule="spend spike").count() == 1


@pytest.mark.parametrize("hour", range(24))
def test_the_sandboxs_made_up_week_lets_a_spike_fire_at_any_hour(app, hour):
    """The walk-through works at night too: the made-up week started at any hour of the
    day, then $3 burnt in its first seconds, is a spike against a usual above zero. (The
    seed's rounding used to leave every hour around midnight UTC at $0.00; a zero usual
    never fires, so ``flask sandbox spike`` at night told a newcomer nothing.)"""
    from webapp.giga.client import parse_billing
    from webapp.sandbox.state import PERIOD, iso
    from webapp.services.history.seed import seed
    from webapp.services.spikes import due

    now = datetime(2026, 12, 3, hour, 47, 12, tzinfo=timezone.utc)
    start = now - timedelta(days=12)  # the sandbox's fresh account, as it is at ``now``

    def reading(plan_credits):
        return parse_billing({"billing": {
            "plan": "starter-pro", "planCreditsRemaining": D(plan_credits),
            "prepaidBalance": D(50), "totalBalance": D(plan_credits) + 50,
            "currentPeriodStart": iso(start), "currentPeriodEnd": iso(start + PERIOD)}})

    with app.app_context():
        seed(reading("74.50"), D(100), now)
        told = due(reading("71.50"), now + timedelta(seconds=3), "medium", LEAST, UTC)
    assert [t.hour.start for t in told] == [now.replace(minute=0, second=0)]
    assert told[0].verdict.usual > 0
