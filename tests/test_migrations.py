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
           "GIGA_API_URL": "http://127.0.0.1:9", "SECRET_KEY": secrets.token_hex(32),
           "API_TOKEN_PEPPER": secrets.token_hex(32),
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


@pytest.mark.parametrize("which", ["sqlite", "postgresql"])
def test_a_month_of_readings_upgrades_and_shows_the_same_figures(tmp_path, which):
    """A database of the release before the quarter-hour usage (revision 0006) with a
    month of readings -- a reset, a top-up credited, a gap -- is upgraded with
    ``flask db upgrade``; its first start works the quarter hours out, and every day of
    every range reads as the readings read before the upgrade, to the cent."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal as D
    from zoneinfo import ZoneInfo

    from webapp import create_app
    from webapp.giga import Billing
    from webapp.models import AuditEntry, BalanceSnapshot, UsageState
    from webapp.services.history.report import RANGES, usage_report

    from .conftest import make_app
    from .support.raw_usage import raw_report
    from .test_rollups import BOOK

    urls = dict(zip(["sqlite", "postgresql"], _database_urls(tmp_path)))
    if which not in urls:
        pytest.skip("TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)")
    url = urls[which]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        drop_every_table(conn)
    engine.dispose()
    pepper = secrets.token_hex(32)
    env = {**os.environ, "DATABASE_URL": url, "GIGA_API_KEY": "giga_sk_migration_test",
           "GIGA_API_URL": "http://127.0.0.1:9", "SECRET_KEY": secrets.token_hex(32),
           "API_TOKEN_PEPPER": pepper, "FLASK_APP": "wsgi"}

    def upgrade(*to):
        result = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade", *to],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    upgrade("0006")
    assert _version(url) == "0006"

    now = datetime.now(timezone.utc).replace(microsecond=0)
    length = timedelta(days=30)
    start = now - timedelta(days=11)
    t, left, prepaid, rows, step = now - timedelta(days=33), D(100), D(50), [], 0
    while t < now - timedelta(minutes=20):
        step += 1
        period = (start - length, start) if t < start else (start, start + length)
        if not (now - timedelta(days=20) < t < now - timedelta(days=18, hours=4)):  # a gap
            rows.append(dict(first_seen_at=t, last_seen_at=t, plan="starter-pro",
                             plan_credits_remaining=left, prepaid_balance=prepaid,
                             total_balance=left + prepaid, period_start=period[0],
                             period_end=period[1]))
        # plan credits first, then prepaid credit; nothing runs on an empty balance
        used = min(D("0.85") if t.hour % 4 else D("1.35"), left + prepaid)
        drawn = min(left, used)
        left, prepaid = left - drawn, prepaid - (used - drawn)
        t += timedelta(hours=2)
        if t >= start and period[0] < start:
            left = D(100)  # plan credits come back at the period's end
        if step == 200:
            prepaid += D(25)  # a top-up, paid through the dashboard
            top_up_at = t - timedelta(minutes=30)
            seen_at = t
    billing = Billing("starter-pro", left, prepaid, left + prepaid, start, start + length)
    old = create_app({"DATABASE_URL": url, "GIGA_API_KEY": "giga_sk_migration_test",
                      "GIGA_API_URL": "http://127.0.0.1:9", "SECRET_KEY": secrets.token_hex(32),
                      "API_TOKEN_PEPPER": pepper, "INSTANCE_PATH": str(tmp_path)})
    la = ZoneInfo("America/Los_Angeles")
    with old.app_context():  # the release before: no quarter hours, readings alone
        db.session.execute(BalanceSnapshot.__table__.insert(), rows)
        db.session.add(AuditEntry(at=top_up_at, user_email="f@example.com",
                                  user_role="finance", action="top-up", amount=D(25),
                                  outcome="sent to checkout", seen="credited",
                                  seen_at=seen_at))
        db.session.commit()
        before = {(key, zone.key): raw_report(key, billing, now, BOOK, read_at=now, zone=zone)
                  for key in RANGES for zone in (ZoneInfo("UTC"), la)}
        db.session.remove()
    with old.app_context():
        db.engine.dispose()

    upgrade()
    assert _version(url) == _head()
    app = make_app(tmp_path, DATABASE_URL=url, GIGA_API_KEY="giga_sk_migration_test",
                   GIGA_API_URL="http://127.0.0.1:9", API_TOKEN_PEPPER=pepper)
    with app.app_context():
        assert db.session.scalar(sa.select(UsageState.through)) is not None  # built at start
        for (key, zone), (days, gaps, whole, changed) in before.items():
            report = usage_report(key, billing, now, BOOK, read_at=now, zone=ZoneInfo(zone))
            assert (report.days, report.gaps, report.whole, report.plan_changed) == \
                (days, gaps, whole, changed), (key, zone)
        thirty = before[("30", "UTC")][0]
        assert sum(d.usage or 0 for d in thirty) > D(150)
        assert [d.top_ups for d in thirty if d.top_ups] == [D(25)]
        assert before[("30", "UTC")][1]  # the gap, shown as one


def test_the_start_reads_the_newest_revision_as_alembic_does(tmp_path, monkeypatch):
    """A start skips Alembic only when the database is at the newest revision: read from
    the migration files as Alembic reads them, whatever their quotes or annotations, and
    never taken as known when the files have more than one head."""
    from webapp import database
    from webapp.commands.schema import head_revision

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()]
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for path in (MIGRATIONS / "versions").glob("*.py"):
        (versions / path.name).write_text(path.read_text())
    monkeypatch.setattr(database, "MIGRATIONS", tmp_path / "migrations")
    newest = head_revision()
    # as `flask db revision` writes one from the template: single quotes, annotations
    (versions / "next.py").write_text(
        f"revision: str = 'abc123'\ndown_revision: str | None = {newest!r}\n")
    assert head_revision() == "abc123"
    (versions / "branch.py").write_text(f"revision = 'def456'\ndown_revision = ({newest!r},)\n")
    assert head_revision() is None  # two heads: Alembic decides
