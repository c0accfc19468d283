"""``flask db …``: Flask-Migrate's commands (upgrade, downgrade, history, …), loaded
when one of them runs. Flask-Migrate brings Alembic with it (11 MB a process); a web
process whose schema is up to date never needs either, so neither is loaded there
(``processes.prepare`` checks the revision with one query first)."""
from __future__ import annotations

import re

import click
from flask.cli import ScriptInfo

#: a migration file's own revision and the one it follows
_REVISION = re.compile(r'^(down_revision|revision) = (?:"([^"]+)"|None)$', re.M)


class SchemaCommands(click.Group):
    """The ``db`` group: Flask-Migrate's own commands, fetched on first use."""

    def list_commands(self, ctx):
        return _migrate(ctx).list_commands(ctx)

    def get_command(self, ctx, name):
        return _migrate(ctx).get_command(ctx, name)


def _migrate(ctx) -> click.Group:
    return use_migrate(ctx.ensure_object(ScriptInfo).load_app())


# the options of Flask-Migrate's group, handed on to it
@click.group("db", cls=SchemaCommands)
@click.option("-d", "--directory", default=None,
              help='Migration script directory (default is "migrations")')
@click.option("-x", "--x-arg", multiple=True,
              help="Additional arguments consumed by custom env.py scripts")
@click.pass_context
def schema_cli(ctx, directory, x_arg):
    """The database's schema (Flask-Migrate): upgrade, downgrade, history, current…"""
    ctx.invoke(_migrate(ctx).callback, directory=directory, x_arg=x_arg)


def use_migrate(app) -> click.Group:
    """Flask-Migrate set up on ``app`` (once), and its ``db`` command group."""
    from flask_migrate import Migrate
    from flask_migrate.cli import db as group

    from ..database import MIGRATIONS
    from ..extensions import db

    if "migrate" not in app.extensions:
        Migrate(app, db, directory=str(MIGRATIONS))
    return group


def head_revision() -> str | None:
    """The newest revision among the migration files (the one no other follows), read
    from their text: no Alembic needed to know whether a database is up to date.
    ``None`` when that is not one revision."""
    from ..database import MIGRATIONS

    own, followed = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for kind, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (own if kind == "revision" else followed).add(value)
    heads = own - followed
    return heads.pop() if len(heads) == 1 else None
