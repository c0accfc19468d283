"""``flask sandbox spend|reset``: move the sandbox's balance by hand (sandbox mode only)."""
from decimal import Decimal, InvalidOperation

import click
from flask import current_app
from . import PreparedGroup

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
    """Put the sandbox account back to the demo account."""
    _sandbox().state.reset()
    click.echo("The sandbox account is back to the demo account.")
