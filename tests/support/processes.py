"""The dashboard as real processes: gunicorn servers and ``flask`` commands, each
started with its own environment, as a deployment runs them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .net import closed_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for(base: str, seconds: float = 20) -> None:
    """Wait until the dashboard at ``base`` answers. Raises ``RuntimeError``."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            requests.get(base + "/signin", timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn at {base} did not start")


def stop_process(proc: subprocess.Popen, seconds: float = 15) -> None:
    """Ask ``proc`` (started in a session of its own) to stop and wait; what is still
    running after ``seconds`` is killed with its whole group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Gunicorn:
    """``gunicorn wsgi:app`` with ``env`` on a free loopback port (or ``port``, when another
    party must know the address first); its log goes to ``log``; ``args`` are more of
    gunicorn's options (``--preload``)."""

    def __init__(self, env: dict, log: Path, workers: int = 1, args: tuple = (),
                 port: int | None = None):
        self.port = port or closed_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
             "-w", str(workers), "--bind", f"127.0.0.1:{self.port}", *args, "wsgi:app"],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=self._log,
            start_new_session=True)
        try:
            wait_for(self.base)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        stop_process(self.proc)
        self._log.close()


def flask(env: dict, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``flask --app wsgi ARGS`` run to its end, as cron would run it."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def flask_started(env: dict, *args: str) -> subprocess.Popen:
    """The same, left running (in a session of its own, so it can be killed outright)."""
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
