"""``flask sandbox spend|spike|reset``: move the sandbox's balance by hand, make its agents
burn fast for a while, or start it over (sandbox mode only)."""
from decimal import Decimal, InvalidOperation

import click
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from . import PreparedGroup
from ..formatting import moment, money
from ..services.history.seed import start_over
from ..services.zone import display_zone

sandbox_cli = PreparedGroup("sandbox", help="The built-in sandbox's account (sandbox mode only).")


def _sandbox():
    sandbox = current_app.extensions.get("sandbox")
    if sandbox is None:
        raise click.ClickException("Not in sandbox mode: there is no sandbox account to change.")
    return sandbox


def _amount(text: str, hint: str, most: int) -> Decimal:
    """``text`` as a positive amount of at most ``most`` with at most two decimals.
    Raises ``click.BadParameter`` naming ``hint``."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter("an amount like 25 or 12.50", param_hint=hint) from None
    if not value.is_finite() or value <= 0 or value > most or value.as_tuple().exponent < -2:
        raise click.BadParameter("a positive amount with at most two decimals",
                                 param_hint=hint)
    return value


@sandbox_cli.command("spend")
@click.argument("amount")
def spend(amount):
    """Use AMOUNT of credits now, as agents would (plan credits first)."""
    value = _amount(amount, "AMOUNT", 100_000)
    account = _sandbox().state.spend(value)
    click.echo(f"Spent {value}: plan credits left {account['planCreditsRemaining']}, "
               f"prepaid {account['prepaidBalance']}.")


@sandbox_cli.command("spike")
@click.option("--per-hour", default="8", show_default=True,
              help="Dollars an hour the runaway agent burns on top of the usual.")
@click.option("--minutes", default=60, show_default=True, type=click.IntRange(1, 24 * 60),
              help="How long it runs.")
def spike(per_hour, minutes):
    """Make the sandbox's agents burn fast for an hour, as a runaway agent would: the
    next readings (a page view, ``flask billing poll``) see a spend spike."""
    rate = _amount(per_hour, "--per-hour", 10_000)
    app = current_app._get_current_object()
    until = _sandbox().state.spike(rate, minutes)
    app.extensions["giga_gateway"].forget_billing()
    click.echo(f"The sandbox's agents now burn {money(rate)} an hour more until "
               f"{moment(until, display_zone())}. Read the balance (open the billing page, "
               "or run `flask billing poll`) a few minutes from now: a spend-spike alert "
               "goes to the configured channels and shows on the Alerts page.")


@sandbox_cli.command("reset")
def reset():
    """Start the sandbox over: the demo account, its made-up month of history with its
    one top-up on the trail, and no alerts, as on its first start (users and the alert
    rules stay)."""
    sandbox = _sandbox()
    app = current_app._get_current_object()
    try:
        written = start_over(sandbox, app.extensions["clock"].now())
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"The sandbox's database could not be reset ({str(exc).splitlines()[0][:200]}); "
            "nothing in it changed. Try again in a moment.") from None
    # every process sharing this store reads the account afresh; one that keeps its own
    # (no REDIS_URL) does within BILLING_CACHE_TTL
    app.extensions["giga_gateway"].forget_billing()
    click.echo(f"The sandbox is back to its first start: the demo account, {written} made-up "
               "readings with their one top-up on the trail, and no alerts (users and the "
               "alert rules stay).")
