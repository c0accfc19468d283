"""gunicorn.conf.py and real gunicorn servers: several worker processes only with a
shared store (REDIS_URL), and then within the budget even when Redis is never reached;
PostgreSQL dropping connections under load, ``--preload``, a database down at start;
the README's deployment behind a buffering proxy."""
import secrets
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gunicorn(*args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WEB_CONCURRENCY")}
    base.update({"GIGA_API_KEY": "giga_sk_gunicorn_test", "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
                 "GIGA_API_URL": "http://127.0.0.1:9", "DATABASE_URL": "sqlite:///:memory:",
                 **env})
    base.pop("GIGA_SANDBOX", None)
    return subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                           "--bind", "127.0.0.1:0", *args, "wsgi:app"], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,env", [(["-w", "4"], {}), ([], {"WEB_CONCURRENCY": "3"})],
                         ids=["command line", "WEB_CONCURRENCY"])
def test_several_workers_without_redis_refuse_to_start(args, env):
    result = _gunicorn(*args, **env)
    assert result.returncode != 0
    assert "need REDIS_URL" in result.stderr and "Traceback" not in result.stderr


def test_the_worker_count_follows_the_machine_with_redis():
    script = ("import runpy, os; cfg = runpy.run_path('gunicorn.conf.py'); "
              "print(cfg['workers'])")
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0"}
    env.pop("WEB_CONCURRENCY", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == 2 * os.cpu_count()
    env.pop("REDIS_URL")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == 1


def test_no_key_and_no_sandbox_mode_refuses_to_start():
    """A production server never falls into the sandbox (and its demo accounts) by accident."""
    result = _gunicorn(GIGA_API_KEY="")
    assert result.returncode != 0
    assert "GIGA_API_KEY" in result.stderr and "GIGA_SANDBOX=1" in result.stderr
    assert "Traceback" not in result.stderr


# -- real servers: the database, Redis and slow clients ---------------------------------

VIEWER_PASSWORD = "violet-anchor-meadow-42"


def _deployment(upstream_url: str, database_url: str, **settings) -> dict:
    """A production-like environment for ``support.processes.Gunicorn``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "WEB_CONCURRENCY", "GIGA_SANDBOX")}
    return {**env, "GIGA_API_URL": upstream_url, "GIGA_API_KEY": "giga_sk_gunicorn_test",
            "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32), "DATABASE_URL": database_url, **settings}


def _viewers(env: dict, tmp_path, count: int) -> list[str]:
    """``count`` viewers in the deployment's database (migrated first, as a start does)."""
    from webapp import create_app, prepare
    from webapp.extensions import db
    from webapp.services.users import create_user

    app = prepare(create_app({k: env[k] for k in ("GIGA_API_URL", "GIGA_API_KEY",
                                                  "SECRET_KEY", "API_TOKEN_PEPPER", "DATABASE_URL")}
                             | {"INSTANCE_PATH": str(tmp_path)}))
    emails = [f"viewer{i}@example.com" for i in range(count)]
    with app.app_context():
        for email in emails:
            create_user(email, "viewer", VIEWER_PASSWORD)
        db.session.remove()
        db.engine.dispose()
    return emails


def _signed_in(base: str, email: str):
    import re

    import requests
    session = requests.Session()
    page = session.get(base + "/signin", timeout=15).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    resp = session.post(base + "/signin", data={"email": email, "password": VIEWER_PASSWORD,
                                                "csrf_token": token}, timeout=15)
    assert resp.url.endswith("/billing"), resp.status_code
    return session


def _views(server, emails, *, at_least=0, meanwhile=None, fresh_connections=False):
    """The statuses of billing pages that ``emails``' viewers load back to back on
    ``server`` until ``meanwhile()`` returns (or, without it, ``at_least`` were loaded);
    ``server`` is stopped at the end."""
    import threading

    import requests

    stop, statuses = threading.Event(), []

    def viewer(session):
        while not stop.is_set():
            if fresh_connections:  # each view on a new connection: any worker may take it
                resp = requests.get(server.base + "/billing", cookies=session.cookies,
                                    headers={"Connection": "close"}, timeout=15)
            else:
                resp = session.get(server.base + "/billing", timeout=15)
            statuses.append(resp.status_code)
    try:
        threads = [threading.Thread(target=viewer, args=(_signed_in(server.base, e),))
                   for e in emails]
        for t in threads:
            t.start()
        if meanwhile is not None:
            meanwhile()
        while len(statuses) < at_least and all(t.is_alive() for t in threads):
            threads[0].join(0.2)
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        server.stop()
    return statuses


def test_connections_dropped_under_load_cost_no_500_postgresql(tmp_path, fault_server):
    """Every connection to PostgreSQL ended again and again (as restarts would) while
    four viewers load pages: a page may say the store is busy, never a bare 500."""
    import time
    from collections import Counter

    from .support.dblocks import terminate_other_connections
    from .support.postgres import emptied_postgres
    from .support.processes import Gunicorn

    url = emptied_postgres()
    env = _deployment(fault_server.url, url, BILLING_CACHE_TTL="1")
    emails = _viewers(env, tmp_path, 4)
    ended = []

    def end_connections():
        for _ in range(80):  # about eight seconds of connections ended every 0.1 s
            ended.append(terminate_other_connections(url))
            time.sleep(0.1)
    statuses = _views(Gunicorn(env, tmp_path / "gunicorn.log"), emails,
                      meanwhile=end_connections)
    assert sum(ended) > 80  # gunicorn's connections, ended under it
    assert 500 not in statuses and set(statuses) <= {200, 503}, Counter(statuses)
    assert statuses.count(200) > len(statuses) / 2
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()


def test_preloaded_workers_use_connections_of_their_own_postgresql(tmp_path, fault_server,
                                                                   redis_server):
    """``--preload``: the master migrates, then forks; each worker must not talk to
    PostgreSQL over the master's connection (nor go without its own background work)."""
    from collections import Counter

    from .support.postgres import emptied_postgres
    from .support.processes import Gunicorn

    url = emptied_postgres()
    env = _deployment(fault_server.url, url, REDIS_URL=redis_server.url, BILLING_CACHE_TTL="1")
    emails = _viewers(env, tmp_path, 4)
    statuses = _views(Gunicorn(env, tmp_path / "gunicorn.log", workers=2, args=("--preload",)),
                      emails, at_least=400, fresh_connections=True)
    assert len(statuses) >= 400 and set(statuses) == {200}, Counter(statuses)


def test_a_database_down_at_start_is_waited_for_then_refused_in_one_line():
    from .support.net import closed_port

    result = _gunicorn(DATABASE_URL=f"postgresql://dash:s3cret-pw@127.0.0.1:{closed_port()}/dash",
                       DATABASE_START_WAIT_SECONDS="2")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr
    assert result.stderr.count("waiting up to 2 s for it") == 1  # said once, not per try
    refusal = [line for line in result.stderr.splitlines() if "Configuration error" in line]
    assert len(refusal) == 1 and "DATABASE_URL" in refusal[0] and "within 2 s" in refusal[0]


def test_a_database_that_appears_within_the_wait_is_used_postgresql(tmp_path, fault_server):
    """PostgreSQL still starting when gunicorn does: gunicorn waits, then serves."""
    import subprocess
    import threading
    from urllib.parse import urlsplit

    from .support.forward import Forwarder
    from .support.net import closed_port
    from .support.postgres import emptied_postgres
    from .support.processes import wait_for

    url = emptied_postgres()
    real = urlsplit(url)
    port, web = closed_port(), closed_port()
    late = url.replace(f"@{real.hostname}:{real.port}", f"@127.0.0.1:{port}")
    env = _deployment(fault_server.url, late, DATABASE_START_WAIT_SECONDS="60")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                             "--bind", f"127.0.0.1:{web}", "wsgi:app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log, waiting = [], threading.Event()

    def read_log():
        for line in proc.stderr:
            log.append(line)
            if "waiting up to 60 s" in line:
                waiting.set()
    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    forwarder = None
    try:
        assert waiting.wait(30), "".join(log)
        forwarder = Forwarder(port, (real.hostname, real.port))  # the database appears
        wait_for(f"http://127.0.0.1:{web}", 60)
        emails = _viewers({**env, "DATABASE_URL": url}, tmp_path, 1)
        session = _signed_in(f"http://127.0.0.1:{web}", emails[0])  # its database, in use
        assert session.get(f"http://127.0.0.1:{web}/billing", timeout=15).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(15)
        proc.stderr.close()
        if forwarder is not None:
            forwarder.close()
    text = "".join(log)
    assert text.count("is not answering") == 1 and "Traceback" not in text


def test_with_redis_never_reached_six_workers_keep_to_the_budget(tmp_path, fault_server):
    """REDIS_URL set, Redis never there: each worker spends its share of the budget,
    and the share is the real number of workers (``-w 6``), so together they keep to it."""
    from .support.net import closed_port
    from .support.processes import Gunicorn

    env = _deployment(fault_server.url, f"sqlite:///{tmp_path / 'shared.db'}",
                      REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
                      UPSTREAM_BUDGET_PER_MINUTE="12", UPSTREAM_RESERVED_FOR_ACTIONS="0",
                      BILLING_CACHE_TTL="0", UPSTREAM_GET_RETRIES="0")
    emails = _viewers(env, tmp_path, 8)
    statuses = _views(Gunicorn(env, tmp_path / "gunicorn.log", workers=6), emails,
                      at_least=600, fresh_connections=True)
    calls = sorted(t for path in ("/api/billing", "/api/billing/plans")
                   for t in fault_server.times(path))
    in_a_minute = max(sum(1 for u in calls if t <= u < t + 60) for t in calls)
    assert len(statuses) >= 600 and 500 not in statuses
    assert in_a_minute <= 12, calls


def _deployment_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("In production")
    return readme[start:readme.index("## Test it", start)]


def test_the_readme_puts_gunicorn_behind_a_buffering_proxy_that_matches_its_settings():
    """Bare gunicorn is held up by clients that send slowly: the deployment the README
    gives has nginx in front, and the example agrees with gunicorn.conf.py."""
    import re
    import runpy

    section = _deployment_section()
    nginx = re.search(r"```nginx\n(.*?)```", section, re.S).group(1)
    cfg = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    for directive in ("proxy_request_buffering on;", "proxy_buffering on;",
                      "client_header_timeout", "client_body_timeout",
                      "X-Forwarded-For $proxy_add_x_forwarded_for;",
                      "X-Forwarded-Proto $scheme;", "X-Forwarded-Host $host;"):
        assert directive in nginx, directive
    # nginx passes to where gunicorn listens by default, and lets idle connections to
    # it go before gunicorn would close them
    assert re.search(r"server (\S+);", nginx).group(1) == cfg["bind"] == "127.0.0.1:8000"
    assert "proxy_pass http://dashboard;" in nginx
    upstream_idle = int(re.search(r"upstream .*?keepalive_timeout (\d+)s;", nginx, re.S)
                        .group(1))
    assert upstream_idle < cfg["keepalive"]
    assert "TRUST_PROXY=1" in section
    words = " ".join(section.split())
    for name in ("timeout", "graceful_timeout", "keepalive"):  # named, with their values
        assert f"`{name}` {cfg[name]} s" in words, name


def test_listening_beyond_loopback_without_trust_proxy_is_said_at_start(caplog):
    """gunicorn.conf.py's start-up check, on its own: a bare gunicorn on a public
    address is worth a line in the log; on loopback, or behind a trusted proxy, not."""
    import logging
    import runpy

    warn = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["_warn_of_a_bare_gunicorn"]

    class Server:  # what the check reads of gunicorn's arbiter
        def __init__(self, *addresses):
            self.cfg = type("Cfg", (), {"address": list(addresses)})()
            self.log = logging.getLogger("gunicorn.error")
    caplog.set_level(logging.WARNING)
    warn(Server(("127.0.0.1", 8000), ("::1", 8000), "/run/dashboard.sock"), {"TRUST_PROXY": 0})
    warn(Server(("0.0.0.0", 8000)), {"TRUST_PROXY": 1})
    assert caplog.text == ""
    warn(Server(("0.0.0.0", 8000)), {"TRUST_PROXY": 0})
    assert "buffering reverse proxy" in caplog.text and "0.0.0.0" in caplog.text
