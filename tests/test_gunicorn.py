"""gunicorn.conf.py: several worker processes only with a shared store (REDIS_URL)."""
import secrets
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gunicorn(*args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WEB_CONCURRENCY")}
    base.update({"GIGA_API_KEY": "giga_sk_gunicorn_test", "SECRET_KEY": secrets.token_hex(32),
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
