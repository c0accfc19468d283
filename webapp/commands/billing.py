"""``flask billing poll``: read the balance on a schedule, so the history does not
depend on someone opening the page; ``flask billing rebuild-usage``: work its usage
out again from the readings (after a restore or an import of readings)."""
from __future__ import annotations

import signal
import threading

import click
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from . import PreparedGroup

from ..services.alerting.deliveries import (configured, deliver_fired_since, last_alert_id,
                                            why_nothing_fired)
from ..services.arrivals import settle
from ..services.checkouts.settlement import settle_kept
from ..services.background import worker
from ..clock import app_clock
from ..errors import describe_upstream
from ..extensions import db
from ..giga import GigaError
from ..services.account import deadline, gateway
from ..services.history.readings import rebuild_usage

billing_cli = PreparedGroup("billing", help="The balance history.")


@billing_cli.command("rebuild-usage")
def rebuild_usage_command():
    """Work the usage of every quarter hour out again from the readings kept (after a
    restore or an import of readings)."""
    started = app_clock().monotonic()
    try:
        quarters = rebuild_usage()
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise click.ClickException(
            f"The usage could not be rebuilt ({str(exc).splitlines()[0][:200]}); what was "
            "kept before stands. Try again in a moment.") from None
    click.echo(f"Usage rebuilt from the readings: {quarters:,} quarter hours kept "
               f"({app_clock().monotonic() - started:.1f} s).")


def _poll_once():
    """Read the balance through the gateway (cache, budget and breaker apply); a reading
    from upstream is kept in the history and checked against the alert rules
    (``services.arrivals``), once, in whichever process read it; the check is done
    before this returns.

    Returns the reading, or ``None`` when no balance was had.
    """
    clock = app_clock()
    try:
        reading = gateway().billing(deadline())
    except GigaError as exc:
        _, title, message = describe_upstream(exc)
        rid = f" (request ID {exc.request_id})" if exc.request_id else ""
        click.echo(f"{clock.now():%Y-%m-%d %H:%M:%S} not read: {title}. {message}{rid}",
                   err=True)
        return None
    settle(current_app)  # the alert check of what was just read, before anything is sent
    b = reading.value
    click.echo(f"{clock.now():%Y-%m-%d %H:%M:%S} {b.plan}: plan credits {b.plan_credits_remaining}"
               f", prepaid {b.prepaid_balance}, total {b.total_balance} (read "
               f"{reading.fetched_at:%H:%M:%S}{', stale' if reading.stale else ''})")
    return reading


def _newest_alert() -> int | None:
    """``last_alert_id``, or ``None`` while the database does not answer (a poll that
    runs for good must outlive that)."""
    try:
        return last_alert_id()
    except SQLAlchemyError:
        db.session.rollback()
        return None


def _say_if_nothing_fired(reading, after_id: int | None) -> None:
    """When no alert fired since alert ``after_id``, say why in one line: what the rules
    saw of ``reading`` (so a walkthrough that crosses nothing is not met with silence)."""
    if reading is not None and after_id is not None and _newest_alert() == after_id:
        click.echo(why_nothing_fired(current_app, reading.value, reading.fetched_at))


def _deliver_what_fired(after_id: int) -> None:
    """Send the alerts this poll fired before the process exits (a cron job's process
    does not live on to do it), waiting at most ``ALERT_POLL_WAIT`` seconds, and say
    how each went."""
    app = current_app
    if not configured(app.config):
        return
    for d in deliver_fired_since(app, after_id, app.config["ALERT_POLL_WAIT"]):
        where = f"{d.channel} to {d.target}"
        if d.status == "sent":
            click.echo(f"alert sent: {d.alert.title} ({where})")
        elif d.status == "failed":
            click.echo(f"alert not sent: {d.alert.title} ({where}): {d.last_error}", err=True)
        else:
            why = f": {d.last_error}" if d.last_error else ""
            click.echo(f"alert not sent yet: {d.alert.title} ({where}){why}; the dashboard's "
                       "web processes and the next poll keep trying", err=True)


@billing_cli.command("poll")
@click.option("--every", type=click.IntRange(min=10), default=None, metavar="SECONDS",
              help="Keep polling, every SECONDS (at least 10), until stopped.")
def poll(every):
    """Read the balance once (or every SECONDS), record it in the history, check the
    alert rules and send what they fire."""
    if every is None:
        before = last_alert_id()
        reading = _poll_once()
        _deliver_what_fired(before)
        _say_if_nothing_fired(reading, before)
        # a cron-only deployment's checkouts settle here too (see audit.settlement)
        settle_kept(current_app, current_app.extensions["clock"].now())
        raise SystemExit(0 if reading is not None else 1)
    # the app itself, not the context-bound proxy: the worker's thread has no context
    worker(current_app._get_current_object())  # delivers and settles between polls
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Polling every {every} s; stop with Ctrl-C or SIGTERM.")
    while not stop.is_set():
        before = _newest_alert()
        _say_if_nothing_fired(_poll_once(), before)
        stop.wait(every)
    click.echo("Stopped.")
