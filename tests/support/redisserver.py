"""A real ``redis-server`` on a free loopback port, started by the tests themselves.

No system service is used: each server has its own folder, no persistence,
and is stopped (or killed, to test an outage) by the test that needs it.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from .net import closed_port


class RedisServer:
    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or closed_port()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start on the same port (again, after ``kill``) and wait until it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder),
             "--protected-mode", "yes", "--loglevel", "warning",
             "--enable-debug-command", "local"],  # DEBUG SLEEP plays a slow Redis
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def flush(self):
        with self.client() as c:
            c.flushall()

    def kill(self):
        """Stop at once, as a crash would (the port then refuses connections)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        # make sure nothing is left listening before a test counts on the outage
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    stop = kill
