"""``flask db …``: Flask-Migrate's commands (upgrade, downgrade, history, …), loaded
when one of them runs. Flask-Migrate brings Alembic with it (11 MB a process); a web
process whose schema is up to date never needs either, so neither is loaded there
(``processes.prepare`` checks the revision with one query first)."""
from __future__ import annotations

import ast

import click
from flask.cli import ScriptInfo

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
    from their ``revision`` and ``down_revision`` (a name, ``None`` or a tuple of names,
    however quoted or annotated): no Alembic needed to know whether a database is up to
    date. ``None`` when that is not exactly one revision (the caller then asks Alembic)."""
    from ..database import MIGRATIONS

    own, followed = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = _assigned(path.read_text(encoding="utf-8"))
        if not isinstance(found.get("revision"), str):
            return None  # not a file this reading understands: let Alembic decide
        own.add(found["revision"])
        down = found.get("down_revision")
        followed.update(down if isinstance(down, (tuple, list)) else [down])
    heads = own - followed
    return heads.pop() if len(heads) == 1 else None


def _assigned(source: str) -> dict:
    """The literal values a module assigns at its top level, by name."""
    found = {}
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and node.value is not None:
            try:
                found[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found
