"""``flask --app webapp users ...``: manage who can sign in."""
import click
from flask import current_app
from . import PreparedGroup

from ..services.trail import COMMAND_LINE
from ..models import ROLES
from ..services import users as service

users_cli = PreparedGroup("users", help="Create, list, change and delete dashboard users.")


def _fail(exc):
    raise click.ClickException(str(exc))


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(ROLES), help="viewer, finance or admin")
@click.option("--password", help="prompted for when omitted; at least 12 characters, "
                                  "not a common one")
@click.option("--sso-only", is_flag=True,
              help="no password: they sign in only through the identity provider (OIDC)")
def create(email, role, password, sso_only):
    """Add a user who can sign in with EMAIL."""
    if sso_only and password:
        _fail("Give either --password or --sso-only, not both.")
    if not sso_only and password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = service.create_user(email, role, None if sso_only else password,
                                   actor=COMMAND_LINE)
    except service.UserError as exc:
        _fail(exc)
    click.echo(f"Created {user.email} ({user.role}).")


@users_cli.command("list")
def list_():
    """List users and their roles."""
    users = service.list_users()
    if not users:
        click.echo("No users yet. Create the first admin with: "
                   "flask --app webapp users create EMAIL --role admin")
    for user in users:
        way = "password" if user.has_password else "SSO"
        if user.uses_sso and user.has_password:
            way = "SSO or password"
        click.echo(f"{user.email}\t{user.role}\t{way}" + ("\t(demo)" if user.is_demo else ""))


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(ROLES))
def set_role(email, role):
    """Give EMAIL a new ROLE (it applies on their next request)."""
    try:
        user = service.set_role(email, role, actor=COMMAND_LINE)
    except service.UserError as exc:
        _fail(exc)
    click.echo(f"{user.email} is now {user.role}.")
    if user.uses_sso and current_app.config["OIDC_ROLE_MAP"] is not None:
        click.echo("Their role follows their groups at the identity provider (OIDC_ROLE_MAP): "
                   "their next sign-in there sets it again.")


@users_cli.command("set-password")
@click.argument("email")
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True,
              help="prompted for when omitted; at least 12 characters, not a common one")
def set_password(email, password):
    """Give EMAIL a new password and sign them out everywhere (also the way back in for
    a user who signs in through single sign-on, when the provider is down)."""
    try:
        sso_only = not service.find(email).has_password
        ended = service.set_password(email, password, actor=COMMAND_LINE, first=True)
    except service.UserError as exc:
        _fail(exc)
    email = service.fold_case(email)
    click.echo(f"New password set for {email}; {ended} session{'' if ended == 1 else 's'} "
               "ended." + (f" {email} signed in only through single sign-on until now: this "
                           "password is a second way in (while PASSWORD_SIGNIN lets them "
                           "use it)." if sso_only else ""))


@users_cli.command("delete")
@click.argument("email")
def delete(email):
    """Remove EMAIL and sign them out everywhere."""
    try:
        service.delete_user(email, actor=COMMAND_LINE)
    except service.UserError as exc:
        _fail(exc)
    click.echo(f"Deleted {service.fold_case(email)}.")
