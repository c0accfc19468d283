"""Three gunicorn servers, as three hosts would run, sharing one Redis and one key.

Real processes over real loopback HTTP: the fault server plays the billing
API, a real ``redis-server`` holds the shared state, and 16 signed-in
viewers spread their page views over all three servers.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from webapp import create_app, prepare
from webapp.services.users import create_user

from .support.faultserver import error, healthy
from .support.net import closed_port
from .support.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "scale-out-password-1"
TTL = 4
THRESHOLD = 3
VIEWERS = 16


class Servers:
    """Three gunicorn masters with two workers each, on one database and one Redis."""

    def __init__(self, tmp: Path, upstream_url: str, redis_url: str):
        self.env = {**os.environ, "GIGA_API_URL": upstream_url,
                    "GIGA_API_KEY": "giga_sk_scale_out", "SECRET_KEY": secrets.token_hex(32),
                    "API_TOKEN_PEPPER": secrets.token_hex(32),
                    "DATABASE_URL": f"sqlite:///{tmp / 'shared.db'}", "REDIS_URL": redis_url,
                    "BILLING_CACHE_TTL": str(TTL), "UPSTREAM_GET_RETRIES": "0",
                    "BREAKER_THRESHOLD": str(THRESHOLD), "BREAKER_COOLDOWN": "120",
                    "UPSTREAM_DEADLINE": "3", "LOGIN_MAX_FAILURES_PER_ADDRESS": "1000"}
        #: the same deployment as the servers, for a test to change its users and tokens
        self.app = app = prepare(create_app({k: v for k, v in self.env.items() if k in (
            "GIGA_API_URL", "GIGA_API_KEY", "SECRET_KEY", "API_TOKEN_PEPPER", "DATABASE_URL")}
            | {"INSTANCE_PATH": str(tmp)}))
        self.log_path = tmp / "gunicorn.log"
        with app.app_context():
            for i in range(VIEWERS):
                create_user(f"viewer{i}@example.com", "viewer", PASSWORD)
        self.procs, self.bases = [], []
        self.log = open(self.log_path, "wb")  # read it when a test here fails
        for _ in range(3):
            port = closed_port()
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                 "-w", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
                cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log))
            self.bases.append(f"http://127.0.0.1:{port}")
        try:
            for base in self.bases:
                wait_for(base)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.log.close()


def _signed_in(base, i) -> requests.Session:
    session = requests.Session()
    # as a browser does: a GET whose kept-alive connection the server had just
    # closed (gunicorn's keep-alive is 2 s) is sent again on a new one. urllib3
    # counts that "remote end closed connection without response" as a read
    # error, and retries reads only of idempotent methods, so a POST never is
    session.mount("http://", HTTPAdapter(max_retries=Retry(
        total=1, connect=0, read=1, status=0, other=1, respect_retry_after_header=False,
        raise_on_status=False)))
    page = session.get(base + "/signin").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    resp = session.post(base + "/signin", data={"email": f"viewer{i}@example.com",
                                                "password": PASSWORD, "csrf_token": token})
    assert resp.url.endswith("/billing"), resp.status_code
    return session


class Load:
    """16 viewers, each sending its page views to the three servers in turn."""

    def __init__(self, servers: Servers):
        self.bases = servers.bases
        self.sessions = [_signed_in(self.bases[i % 3], i) for i in range(VIEWERS)]
        self.statuses: list[int] = []
        self.bodies_500: list[str] = []

    def run(self, seconds, during=None):
        stop = time.monotonic() + seconds

        def viewer(i, session):
            n = i
            while time.monotonic() < stop:
                resp = session.get(self.bases[n % 3] + "/billing", timeout=10)
                self.statuses.append(resp.status_code)
                if resp.status_code >= 500 and "Traceback" in resp.text:
                    self.bodies_500.append(resp.text[:500])
                n += 1
                time.sleep(0.05)
        threads = [threading.Thread(target=viewer, args=(i, s))
                   for i, s in enumerate(self.sessions)]
        for t in threads:
            t.start()
        if during:
            during()
        for t in threads:
            t.join()


@pytest.fixture(scope="module")
def upstream():
    from .support.faultserver import FaultServer

    server = FaultServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, upstream, _redis_server):
    servers = Servers(tmp_path_factory.mktemp("scale"), upstream.url, _redis_server.url)
    yield servers
    servers.stop()


@pytest.fixture
def fresh(servers, upstream, redis_server):
    """A healthy upstream and an empty Redis: no cached reading, no breaker, no budget
    spent (the processes keep none of these themselves while Redis answers); returns
    when the test began, to count upstream calls from."""
    upstream.handler = healthy
    redis_server.flush()
    return time.monotonic()


def test_sixteen_viewers_on_three_servers_share_one_read_per_ttl(servers, upstream, fresh):
    load = Load(servers)
    load.run(20)
    assert set(load.statuses) == {200} and len(load.statuses) > 500
    billing = upstream.times("/api/billing", since=fresh)
    gaps = [b - a for a, b in zip(billing, billing[1:])]
    # one read per TTL window across all six processes, never two side by side
    assert billing and min(gaps) >= TTL - 0.5, gaps
    assert len(upstream.times("/api/billing", fresh)) + \
        len(upstream.times("/api/billing/plans", fresh)) <= 30


def test_redis_killed_mid_run_gives_no_500_and_is_recovered(servers, upstream, fresh,
                                                            redis_server):
    load = Load(servers)
    outage = {}

    def outage_in_the_middle():
        time.sleep(4)
        redis_server.kill()
        outage["from"] = time.monotonic()
        time.sleep(5)
        redis_server.start()
        outage["to"] = time.monotonic()
    load.run(16, during=outage_in_the_middle)
    assert 500 not in load.statuses and not load.bodies_500
    assert load.statuses.count(200) > 0.9 * len(load.statuses)
    # back on Redis: the shared reading is there again, one read per TTL window
    with redis_server.client() as r:
        assert r.keys("giga:*:billing")
    after = upstream.times("/api/billing", since=outage["to"] + 2)
    assert after and all(b - a >= TTL - 0.5 for a, b in zip(after, after[1:]))
    # while Redis was away, each of the six processes read on its own: still bounded
    during = upstream.times("/api/billing", since=outage["from"])
    assert len(during) <= 30


def test_a_failing_upstream_opens_the_breaker_for_all_three(servers, upstream, fresh):
    upstream.handler = lambda *a: error(500, "INTERNAL_ERROR")
    started = len(upstream.requests)
    load = Load(servers)  # signing in lands on the billing page: the first views
    load.run(6)
    calls = len(upstream.requests) - started
    # the threshold, plus at most the one other read already on its way
    assert THRESHOLD <= calls <= THRESHOLD + 1
    assert 500 not in load.statuses and set(load.statuses) <= {502, 503}
    # every server now answers at once, without calling
    for base in servers.bases:
        page = load.sessions[0].get(base + "/billing")
        assert page.status_code == 503 and "giving it a moment" in page.text
    assert len(upstream.requests) - started == calls


def test_an_api_token_is_one_token_on_every_server(servers, fresh):
    """A demotion or a revocation is in force on the next request to any server, a
    token's minute is counted once for all three, and no log holds the token."""
    from webapp.clock import Clock
    from webapp.services import tokens
    from webapp.services.trail import COMMAND_LINE
    from webapp.services.users import set_role

    with servers.app.app_context():
        owner = create_user("api-finance@example.com", "finance", PASSWORD)
        _, text = tokens.create("nightly", ["usage:read", "audit:read"], 30, owner=owner,
                                actor=COMMAND_LINE, now=Clock().now())
    bearer = {"Authorization": f"Bearer {text}"}
    audit = [requests.get(f"{base}/api/v1/audit", headers=bearer, timeout=10)
             for base in servers.bases]
    assert [a.status_code for a in audit] == [200, 200, 200]
    with servers.app.app_context():
        set_role("api-finance@example.com", "viewer", actor=COMMAND_LINE)
    demoted = requests.get(f"{servers.bases[1]}/api/v1/audit", headers=bearer, timeout=10)
    assert demoted.status_code == 403 and demoted.json()["error"]["type"] == \
        "insufficient_scope"
    codes = [requests.get(f"{servers.bases[i % 3]}/api/v1/tokens/self", headers=bearer,
                          timeout=10).status_code for i in range(60)]
    assert codes == [200] * 56 + [429] * 4  # 60 a minute, the 4 above among them
    with servers.app.app_context():
        tokens.revoke(tokens.find(text), actor=COMMAND_LINE, now=Clock().now())
    revoked = requests.get(f"{servers.bases[2]}/api/v1/tokens/self", headers=bearer,
                           timeout=10)
    assert revoked.status_code == 401 and revoked.json()["error"]["type"] == "token_revoked"
    servers.log.flush()
    assert text.split("_")[2] not in servers.log_path.read_text()
