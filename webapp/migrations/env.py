"""Alembic's environment, run by ``flask db upgrade`` and at every start.

Two changes from Flask-Migrate's template: logging is left to the app (no
``fileConfig``, which would silence the app's own loggers), and on
PostgreSQL the migration holds an advisory lock, so processes on several
hosts starting at once upgrade one after the other. (Flask-Migrate runs
migrations in batch mode, which SQLite needs to alter a table.)
"""
import logging

from alembic import context
from flask import current_app
from sqlalchemy import text

logger = logging.getLogger("alembic.env")
config = context.config
target_db = current_app.extensions["migrate"].db

#: any fixed number; every process of this app takes the same lock
ADVISORY_LOCK = 7_314_159_265


def get_engine():
    return target_db.engine


config.set_main_option("sqlalchemy.url",
                       get_engine().url.render_as_string(hide_password=False).replace("%", "%%"))


def run_migrations_offline():
    """Emit the SQL instead of running it (``flask db upgrade --sql``)."""
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_db.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context, revision, directives):
        # `flask db migrate` with no schema change writes no empty revision
        if getattr(config.cmd_opts, "autogenerate", False):
            if directives[0].upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    engine = get_engine()
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        context.configure(connection=connection, target_metadata=target_db.metadata,
                          **conf_args)
        with context.begin_transaction():
            if postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                   {"k": ADVISORY_LOCK})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
