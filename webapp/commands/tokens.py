"""``flask --app webapp tokens ...``: make, list and revoke API tokens from a script."""
import click

from ..clock import app_clock
from ..services import tokens as service
from ..services import users
from ..services.trail import COMMAND_LINE
from . import PreparedGroup

tokens_cli = PreparedGroup("tokens", help="Create, list and revoke tokens for the JSON API.")


@tokens_cli.command("create")
@click.argument("name")
@click.option("--user", "email", help="the user a personal token belongs to (it reads no more "
              "than their role, and stops when they are removed)")
@click.option("--team", is_flag=True, help="a team token: belongs to the account")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(tuple(service.SCOPES)), help="repeat for several")
@click.option("--days", type=click.Choice([str(d) for d in service.LIFETIMES]),
              default=str(service.DEFAULT_LIFETIME), show_default=True)
def create(name, email, team, scopes, days):
    """Make a token called NAME and print it (the only time it is shown)."""
    if bool(email) == team:
        raise click.ClickException("Give either --user EMAIL (a personal token) or --team.")
    try:
        owner = users.find(email) if email else None
        token, text = service.create(name, scopes, days, owner=owner, actor=COMMAND_LINE,
                                     now=app_clock().now())
    except (service.TokenError, users.UserError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {token.hint} “{token.name}”, expires "
               f"{token.expires_at:%Y-%m-%d %H:%M} UTC. Copy it now; it is not shown again:",
               err=True)
    click.echo(text)


@tokens_cli.command("list")
def list_():
    """Every token: listing, name, owner, scopes, expiry, last use, state."""
    now = app_clock().now()
    rows = service.visible_to(None, admin=True)
    if not rows:
        click.echo("No tokens yet.")
    for t in rows:
        used = (f"used {t.last_used_at:%Y-%m-%d %H:%M} from {t.last_used_address}"
                if t.last_used_at else "never used")
        click.echo("\t".join((t.hint, t.name, "team" if t.team else t.owner_email,
                              t.scopes.replace(" ", ","),
                              f"expires {t.expires_at:%Y-%m-%d %H:%M}", used,
                              service.status(t, now))))


@tokens_cli.command("revoke")
@click.argument("token")
def revoke(token):
    """Revoke TOKEN (its text, public id, or listing as `tokens list` prints it)."""
    try:
        found = service.find(token)
    except service.TokenError as exc:
        raise click.ClickException(str(exc)) from None
    if service.revoke(found, actor=COMMAND_LINE, now=app_clock().now()):
        click.echo(f"Revoked {found.hint} “{found.name}”.")
    else:
        click.echo(f"{found.hint} was revoked already.")
