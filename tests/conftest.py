"""Fixtures: a real sandbox on loopback, an app wired to it, a client, a CLI
runner, and ``auth`` so tests say ``auth.login("finance")``."""
from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from webapp import create_app, prepare
from webapp.clock import FrozenClock
from webapp.sandbox import Sandbox
from webapp.sandbox.server import RateLimiter

from .support.faultserver import FaultServer
from .support.mock_oidc import MockProvider

DEMO_PASSWORD = "demo"


@pytest.fixture(scope="session")
def _sandbox_server(tmp_path_factory):
    sandbox = Sandbox(tmp_path_factory.mktemp("sandbox") / "state.json").start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(_sandbox_server):
    """The sandbox, reset to the demo account, its call log and rate window emptied."""
    _sandbox_server.state.reset()
    _sandbox_server.calls.clear()
    _sandbox_server.limiter = RateLimiter(60)
    _sandbox_server.outage = False
    yield _sandbox_server
    _sandbox_server.outage = False


_MIGRATED: list[Path] = []


def _migrated_database(path: Path) -> None:
    """Put a copy of a database already at the schema's head at ``path``: migrating
    one per test would cost every test the same second of Alembic."""
    if not _MIGRATED:
        folder = Path(tempfile.mkdtemp(prefix="migrated-"))
        template = folder / "template.db"
        app = prepare(create_app({"TESTING": True, "INSTANCE_PATH": str(folder),
                                  "GIGA_API_KEY": "giga_sk_template",
                                  "DATABASE_URL": f"sqlite:///{template}"}))
        with app.app_context():
            from webapp.extensions import db
            with db.engine.connect() as conn:  # all of it in the one file
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            db.engine.dispose()
        _MIGRATED.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MIGRATED[0], path)


#: the apps made during the running test (see ``_apps_wound_up``)
_MADE: list = []


@pytest.fixture(autouse=True)
def _apps_wound_up():
    """After each test, what its apps still owed is done and their connections closed:
    a reading is recorded after the page that read it (``services.arrivals``), and
    none may be written into a test that has ended, nor leave a connection for the
    garbage collector to find open."""
    yield
    from webapp.extensions import db
    from webapp.services.arrivals import settle

    while _MADE:
        app = _MADE.pop()
        settle(app)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def make_app(tmp_path, **overrides):
    """The dashboard with test settings; handing it a running ``SANDBOX`` asks for
    sandbox mode (``GIGA_SANDBOX=1``), and ``DATABASE_URL`` is then its database."""
    default_db = tmp_path / "test.db"
    if "DATABASE_URL" not in overrides and not default_db.exists():
        _migrated_database(default_db)
    config = {"TESTING": True, "WTF_CSRF_ENABLED": False, "INSTANCE_PATH": str(tmp_path),
              "DATABASE_URL": f"sqlite:///{default_db}"}
    config.update(overrides)
    if "SANDBOX" in overrides:
        config.setdefault("GIGA_SANDBOX", "1")
        config.setdefault("SANDBOX_DATABASE_URL", config["DATABASE_URL"])
    app = prepare(create_app(config))  # as every process readies it
    _MADE.append(app)
    return app


def own_sandbox_app(tmp_path, **more):
    """The dashboard in sandbox mode with a sandbox of its own (its state and database in
    ``tmp_path``, seeded on its first start as a newcomer's is), no spending of its own;
    the caller stops ``app.extensions["sandbox"]``."""
    return make_app(tmp_path, GIGA_SANDBOX="1", SANDBOX_STATE_PATH=str(tmp_path / "state.json"),
                    SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.db'}",
                    SANDBOX_SPEND_PER_HOUR="0", BILLING_CACHE_TTL="0", **more)


@pytest.fixture
def own_sandbox(tmp_path, receiver):
    """``own_sandbox_app`` alerting to ``receiver``, with finance signed in on a client:
    ``(app, client, runner)``; its sandbox is stopped afterwards."""
    app = own_sandbox_app(tmp_path, ALERT_WEBHOOK_URL=receiver.url)
    client = app.test_client()
    try:
        AuthActions(client).login("finance")
        yield app, client, app.test_cli_runner()
    finally:
        app.extensions["sandbox"].stop()


@pytest.fixture
def app(tmp_path, sandbox):
    """The dashboard in sandbox mode against the shared sandbox, CSRF off."""
    return make_app(tmp_path, SANDBOX=sandbox)


@pytest.fixture
def still_clock():
    """A clock standing at the start of the minute the test starts in. What folds "within
    one minute" (the trail's summary rows, refusal limits) is tested on it, so a slow run
    that straddles a minute on the wall clock cannot split a row in two."""
    return FrozenClock(time.time() // 60 * 60)


@pytest.fixture
def still_app(tmp_path, sandbox, still_clock):
    """``app`` on ``still_clock``."""
    return make_app(tmp_path, SANDBOX=sandbox, CLOCK=still_clock)


@pytest.fixture
def csrf_app(tmp_path, sandbox):
    """The same, with CSRF on (as in production)."""
    return make_app(tmp_path, SANDBOX=sandbox, WTF_CSRF_ENABLED=True)


@pytest.fixture
def seeded(app, sandbox):
    """The app with the sandbox's made-up month of readings (a reading every two hours,
    a period reset and a credited top-up in it), ending a minute ago."""
    from decimal import Decimal

    from webapp.giga.client import parse_billing
    from webapp.services.history.seed import seed

    with app.app_context():
        seed(parse_billing({"billing": sandbox.state.billing()}), Decimal(100),
             datetime.now(timezone.utc) - timedelta(minutes=1))
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, role="finance", password=DEMO_PASSWORD, follow=False):
        email = role if "@" in role else f"{role}@demo.test"
        return self._client.post("/signin", data={"email": email, "password": password},
                                 follow_redirects=follow)

    def logout(self):
        return self._client.post("/signout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def oidc():
    """A mock OpenID provider on loopback (``support.mock_oidc``), stopped afterwards."""
    provider = MockProvider()
    yield provider
    provider.stop()


def sso_settings(provider, **more):
    """The settings that point the dashboard at ``provider``, with a role map."""
    return {"OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": provider.client_id,
            "OIDC_CLIENT_SECRET": provider.client_secret,
            "OIDC_SCOPES": "openid email profile groups",
            "OIDC_ROLE_MAP": "billing-admins=admin,billing-finance=finance,everyone=viewer",
            **more}


@pytest.fixture
def fault_server():
    server = FaultServer()
    yield server
    server.close()


@pytest.fixture
def fault_app(tmp_path, fault_server):
    """The dashboard against the misbehaving server, as against a real API key."""
    from webapp.services.users import create_user

    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_fault",
                   BILLING_CACHE_TTL="0", UPSTREAM_DEADLINE="3", UPSTREAM_CONNECT_TIMEOUT="1",
                   BREAKER_THRESHOLD="100")
    with app.app_context():
        for role in ("viewer", "finance", "admin"):
            create_user(f"{role}@example.com", role, "correct-horse-battery")
    return app


@pytest.fixture
def fault_client(fault_app):
    client = fault_app.test_client()
    client.post("/signin", data={"email": "admin@example.com",
                                 "password": "correct-horse-battery"})
    return client


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory):
    from .support.redisserver import RedisServer

    if not RedisServer.available():
        pytest.fail("redis-server is not installed: `apt-get install redis-server` "
                    "(.ci/run does)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_server):
    """A real Redis on loopback, emptied for each test (and running again if one killed it)."""
    if _redis_server.proc is None:
        _redis_server.start()
    _redis_server.flush()
    yield _redis_server
    if _redis_server.proc is None:
        _redis_server.start()


@pytest.fixture
def node_oidc(tmp_path):
    """Start the certified OpenID provider (node ``oidc-provider``) on loopback:
    ``node_oidc(redirect_uris, accounts={login: {sub, email, email_verified, groups, name}},
    post_logout_redirect_uris=[...], host="localhost" to be another site)`` gives a running
    ``NodeProvider`` with one client (``.client``); each one started is stopped after the
    test (a start takes ~0.4 s)."""
    from .support.node_oidc import NodeProvider, new_client

    started = []

    def start(redirect_uris, accounts=None, post_logout_redirect_uris=None, host="127.0.0.1"):
        provider = NodeProvider(tmp_path / f"node-oidc-{len(started)}",
                                [new_client(redirect_uris, post_logout_redirect_uris)], accounts,
                                host=host)
        started.append(provider)
        return provider
    yield start
    for provider in started:
        provider.stop()


@pytest.fixture
def mailbox():
    """A real SMTP server on loopback that keeps what it is given."""
    from .support.receivers import MailBox

    box = MailBox()
    yield box
    box.close()


@pytest.fixture
def receiver():
    """A real webhook endpoint on loopback that records each POST."""
    from .support.receivers import WebhookReceiver

    hook = WebhookReceiver()
    yield hook
    hook.close()


#: test modules that start processes (gunicorn, flask, java), a browser or PostgreSQL (and
#: any test using ``node_oidc``, which starts node)
SLOW_MODULES = {"test_scale_out.py", "test_alerts_unattended.py", "test_readme.py",
                "test_gunicorn.py", "test_postgres.py", "test_markup.py", "test_migrations.py",
                "test_outbox_processes.py", "test_starts.py"}


def pytest_collection_modifyitems(items):
    """Mark what is slow, so ``pytest -m "not slow"`` runs the rest in a minute or two
    while working (the README's test command still runs everything)."""
    for item in items:
        if item.path.name in SLOW_MODULES or item.get_closest_marker("browser") \
                or "postgresql" in item.name or "node_oidc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def deliver_all(app, later=0):
    """Check the readings that arrived against the alert rules, then deliver what is
    due -- here, or by the app's own worker thread, which a new alert wakes (waited
    for)."""
    from webapp.extensions import db
    from webapp.models import AlertDelivery
    from webapp.services.alerting.deliveries import deliver_due
    from webapp.services.arrivals import settle

    settle(app)
    with app.app_context():
        clock = app.extensions["clock"]
        deliver_due(app, clock.now() + timedelta(seconds=later))
        for _ in range(100):
            db.session.expire_all()
            if not AlertDelivery.query.filter(AlertDelivery.status == "pending",
                                              AlertDelivery.claimed_until.isnot(None)).count():
                return
            time.sleep(0.05)
