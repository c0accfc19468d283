"""Schema migrations: every start brings the database to the newest revision, and
``flask db upgrade`` adopts a database made by the first release (``create_all``,
no migration history), on SQLite and, with TEST_DATABASE_URL, on PostgreSQL."""
import secrets
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config

from webapp import MIGRATIONS
from webapp.extensions import db

from .support.postgres import drop_every_table


ROOT = Path(__file__).resolve().parents[1]
def _head() -> str:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def _version(url) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _first_release_database(url):
    """What the first release left: its tables from create_all, a user, no history."""
    engine = sa.create_engine(url)
    schema = (Path(__file__).parent / "support" /
              f"first_release_{engine.dialect.name}.sql").read_text()
    with engine.begin() as conn:
        drop_every_table(conn)
        ddl = "\n".join(line for line in schema.splitlines() if not line.startswith("--"))
        for statement in filter(str.strip, ddl.split(";")):
            conn.execute(sa.text(statement))
        conn.execute(sa.text(
            "INSERT INTO users (email, role, password_hash, is_demo, created_at) "
            "VALUES ('kept@example.com', 'admin', 'x', false, CURRENT_TIMESTAMP)"))
    engine.dispose()


def _database_urls(tmp_path):
    urls = [f"sqlite:///{tmp_path / 'old.db'}"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"].replace("postgresql://",
                                                            "postgresql+psycopg://", 1))
    return urls


def test_a_new_database_starts_at_the_newest_revision(app):
    with app.app_context():
        assert _version(app.config["SQLALCHEMY_DATABASE_URI"]) == _head()
        with db.engine.connect() as conn:
            # the models and the migrations describe the same schema
            assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []


@pytest.mark.parametrize("which", ["sqlite", "postgresql"])
def test_flask_db_upgrade_adopts_a_first_release_database(tmp_path, which):
    urls = dict(zip(["sqlite", "postgresql"], _database_urls(tmp_path)))
    if which not in urls:
        pytest.skip("TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)")
    url = urls[which]
    _first_release_database(url)
    assert _version(url) is None
    env = {**os.environ, "DATABASE_URL": url, "GIGA_API_KEY": "giga_sk_migration_test",
           "GIGA_API_URL": "http://127.0.0.1:9", "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
           "FLASK_APP": "wsgi"}
    result = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _version(url) == _head()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM users")).scalars().all() == [
            "kept@example.com"]
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
    engine.dispose()
