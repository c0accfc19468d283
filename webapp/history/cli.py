"""``flask billing poll``: read the balance on a schedule, so the history does not
depend on someone opening the page."""
from __future__ import annotations

import signal
import threading

import click
from flask import current_app
from flask.cli import AppGroup

from ..errors import describe_upstream
from ..gateway import UpstreamFault
from .service import record

billing_cli = AppGroup("billing", help="The balance history.")


def _poll_once() -> bool:
    """Read the balance through the gateway (cache, budget and breaker apply) and keep it.

    Returns whether a balance was had.
    """
    app = current_app
    gateway, clock = app.extensions["giga_gateway"], app.extensions["clock"]
    try:
        reading = gateway.billing(clock.monotonic() + app.config["UPSTREAM_DEADLINE"])
    except UpstreamFault as exc:
        _, title, message = describe_upstream(exc)
        rid = f" (request ID {exc.request_id})" if exc.request_id else ""
        click.echo(f"{clock.now():%Y-%m-%d %H:%M:%S} not read: {title}. {message}{rid}",
                   err=True)
        return False
    record(reading.value, reading.fetched_at, keep_days=app.config["HISTORY_DAYS"])
    b = reading.value
    click.echo(f"{clock.now():%Y-%m-%d %H:%M:%S} {b.plan}: plan credits {b.plan_credits_remaining}"
               f", prepaid {b.prepaid_balance}, total {b.total_balance} (read "
               f"{reading.fetched_at:%H:%M:%S}{', stale' if reading.stale else ''})")
    return True


@billing_cli.command("poll")
@click.option("--every", type=click.IntRange(min=10), default=None, metavar="SECONDS",
              help="Keep polling, every SECONDS (at least 10), until stopped.")
def poll(every):
    """Read the balance once (or every SECONDS) and record it in the history."""
    if every is None:
        raise SystemExit(0 if _poll_once() else 1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Polling every {every} s; stop with Ctrl-C or SIGTERM.")
    while not stop.is_set():
        _poll_once()
        stop.wait(every)
    click.echo("Stopped.")
