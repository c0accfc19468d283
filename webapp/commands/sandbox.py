"""``flask sandbox spend|reset``: move the sandbox's balance by hand, or start it over
(sandbox mode only)."""
from decimal import Decimal, InvalidOperation

import click
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from . import PreparedGroup
from ..services.history.seed import start_over

sandbox_cli = PreparedGroup("sandbox", help="The built-in sandbox's account (sandbox mode only).")


def _sandbox():
    sandbox = current_app.extensions.get("sandbox")
    if sandbox is None:
        raise click.ClickException("Not in sandbox mode: there is no sandbox account to change.")
    return sandbox


@sandbox_cli.command("spend")
@click.argument("amount")
def spend(amount):
    """Use AMOUNT of credits now, as agents would (plan credits first)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise click.BadParameter("an amount like 25 or 12.50", param_hint="AMOUNT") from None
    if not value.is_finite() or value <= 0 or value > 100_000 or value.as_tuple().exponent < -2:
        raise click.BadParameter("a positive amount with at most two decimals",
                                 param_hint="AMOUNT")
    account = _sandbox().state.spend(value)
    click.echo(f"Spent {value}: plan credits left {account['planCreditsRemaining']}, "
               f"prepaid {account['prepaidBalance']}.")


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
