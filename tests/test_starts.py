"""Every usual way to start the dashboard, from a fresh clone, as real processes:
Flask's and gunicorn's own conventions for a factory (``flask --app webapp
run``, ``gunicorn 'webapp:create_app()'``) and ``gunicorn wsgi:app`` with three
workers on PostgreSQL and Redis. Each serves a dashboard that works: the
finance demo account signs in, the billing page shows, and the made-up month
is on the trail once.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from .support.net import closed_port
from .support.postgres import emptied_postgres, with_driver
from .support.processes import wait_for
from .test_readme import _fresh_clone

#: the made-up month's one top-up, as the audit page shows its request ID
SEEDED_TOP_UP = '<code class="small">sandbox-seed</code>'


def _newcomer_env(**settings) -> dict:
    """A shell with nothing of the dashboard's set but ``settings`` (sandbox mode)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIGA_", "ALERT_", "SMTP_", "REDIS_", "DATABASE_", "SANDBOX_",
                                "SECRET_KEY", "API_TOKEN_", "METRICS_", "WEB_CONCURRENCY", "FLASK_"))}
    return {**env, "GIGA_SANDBOX": "1", **settings}


class Started:
    """``command`` run in ``clone`` (a session of its own, so all of it can be stopped),
    answering at ``base``; its output goes to ``log``."""

    def __init__(self, command: list[str], clone: Path, env: dict, port: int, log: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(command, cwd=clone, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self.base, 60)
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()


def _signed_in(base: str) -> requests.Session:
    """A browser signed in as the finance demo account, through the real form (CSRF on).
    Fails the test with the page's own words when sign-in does not work."""
    browser = requests.Session()
    form = browser.get(base + "/signin", timeout=30).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    resp = browser.post(base + "/signin", data={"csrf_token": token, "email":
                                                "finance@demo.test", "password": "demo"},
                        allow_redirects=False, timeout=30)
    title = re.search(r"<h1[^>]*>(.*?)</h1>", resp.text, re.S)
    assert resp.status_code == 302, (resp.status_code, title and title.group(1))
    return browser


def _works_as_a_first_start(started: Started) -> None:
    """Sign-in works, the billing page shows its gauge, and the trail has the made-up
    month's one top-up."""
    browser = _signed_in(started.base)
    page = browser.get(started.base + "/billing", timeout=30)
    assert page.status_code == 200 and '<meter class="gauge"' in page.text
    trail = browser.get(started.base + "/audit", timeout=30)
    assert trail.status_code == 200
    assert trail.text.count(SEEDED_TOP_UP) == 1
    assert started.running(), started.log.read_text()


@pytest.mark.parametrize("command", [
    ["flask", "--app", "webapp", "run", "--port", "{port}"],
    ["gunicorn", "--bind", "127.0.0.1:{port}", "webapp:create_app()"],
], ids=["flask --app webapp run", "gunicorn webapp:create_app()"])
def test_the_factory_started_the_usual_way_serves_a_whole_sandbox(tmp_path, command):
    """Flask's and gunicorn's conventions for a factory: the app made by
    ``create_app()`` is readied (schema, seeding, demo users, background worker) by
    its first request, as ``wsgi.py`` readies it at start."""
    clone = _fresh_clone(tmp_path)
    port = closed_port()
    argv = [sys.executable, "-m", *(part.format(port=port) for part in command)]
    started = Started(argv, clone, _newcomer_env(), port, tmp_path / "server.log")
    try:
        _works_as_a_first_start(started)
    finally:
        started.stop()
    assert "Traceback" not in started.log.read_text()


def test_three_workers_on_postgresql_and_redis_start_whole_and_seed_once(tmp_path,
                                                                         redis_server):
    """The sandbox's first start on PostgreSQL with three gunicorn workers at once:
    every worker comes up (none dies on a demo user another made), and the made-up
    month is written once."""
    url = emptied_postgres()
    clone = _fresh_clone(tmp_path)
    port = closed_port()
    env = _newcomer_env(SANDBOX_DATABASE_URL=url, REDIS_URL=redis_server.url,
                        WEB_CONCURRENCY="3")
    started = Started([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                       "wsgi:app"], clone, env, port, tmp_path / "server.log")
    try:
        for _ in range(3):  # spread over the workers, whichever answers
            _works_as_a_first_start(started)
    finally:
        started.stop()
    log = started.log.read_text()
    assert "Traceback" not in log and "Worker failed to boot" not in log
    engine = sa.create_engine(with_driver(url))
    try:
        with engine.connect() as conn:
            seeded = conn.scalar(sa.text("SELECT count(*) FROM audit_entries "
                                         "WHERE request_id = 'sandbox-seed'"))
            readings = conn.execute(sa.text(
                "SELECT count(*), count(DISTINCT first_seen_at) FROM balance_snapshots")).one()
            demo = conn.scalar(sa.text("SELECT count(*) FROM users WHERE is_demo"))
    finally:
        engine.dispose()
    assert seeded == 1
    assert readings[0] == readings[1]  # no made-up reading twice
    assert demo == 3
