"""Every command in the README works as written, pasted into a fresh clone.

Each ``sh`` block runs in a copy of the repository as a clone has it (no
``instance/``, no ``node_modules``), with no ``GIGA_*`` setting but what
the block itself sets. A block the README says runs "with the deployment's
environment" (marked ``<!-- readme-test: deployment -->``) gets
``GIGA_SANDBOX=1`` as that environment. Servers are started, must answer, and
are stopped at the end; installs are left to ``.ci/run``; a block marked
``<!-- readme-test: skip ... -->`` says why it is not run. The cron line runs
under an empty environment, as cron runs it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a password the rules accept, typed at every prompt
PASSWORD = "violet-anchor-meadow-42"
#: commands that keep running, and the loopback port each answers on (None: just alive)
SERVERS = [(re.compile(r"\bflask .*\brun\b"), 5000), (re.compile(r"^gunicorn "), 8000),
           (re.compile(r"webapp\.alerts\.receiver --port (\d+)"), "port"),
           (re.compile(r"billing poll --every"), None)]
#: installing is .ci/run's job: the environment running this test has done it
INSTALL = re.compile(r"^(pip install [^&]*|npm install)\s*&&\s*")


def _blocks(text: str):
    """``(language, marker, commands)`` for each fenced block, commands joined across
    trailing backslashes; ``marker`` is the ``readme-test`` comment right before it."""
    pattern = re.compile(r"(?:<!-- readme-test: ([^>]*?) -->\s*\n)?[ ]*```(\w*)\n(.*?)\n[ ]*```",
                         re.S)
    for match in pattern.finditer(text):
        marker, language, body = match.group(1) or "", match.group(2), match.group(3)
        lines = [line.strip() for line in body.replace("\\\n", " ").splitlines()]
        yield language, marker, [line for line in lines if line and not line.startswith("#")]


def _fresh_clone(tmp: Path) -> Path:
    """The repository's files as a clone has them (what git tracks, and new files it
    would add), without anything a run or an install left behind."""
    clone = tmp / "clone"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Session:
    """Runs the README's commands in ``clone``, keeping the servers it starts."""

    def __init__(self, clone: Path, log: Path):
        self.clone, self.log = clone, log
        self.servers: list[tuple[str, subprocess.Popen]] = []
        self._logs = []
        self.base = {k: v for k, v in os.environ.items()
                     if not k.startswith(("GIGA_", "ALERT_", "SMTP_", "REDIS_", "DATABASE_",
                                          "SECRET_KEY", "METRICS_", "WEB_CONCURRENCY"))}

    def run(self, command: str, env: dict) -> None:
        command = INSTALL.sub("", command)
        for pattern, port in SERVERS:
            if match := pattern.search(command):
                self.serve(command, env, int(match.group(1)) if port == "port" else port)
                return
        result = subprocess.run(["bash", "-c", command], cwd=self.clone, env=env,
                                input=f"{PASSWORD}\n{PASSWORD}\n", capture_output=True,
                                text=True, timeout=120)
        with open(self.log, "a") as out:
            out.write(f"$ {command}\n{result.stdout}{result.stderr}\n")
        assert result.returncode == 0, (command, result.stdout, result.stderr)

    def serve(self, command: str, env: dict, port: int | None) -> None:
        out = open(self.log.with_name(f"server-{len(self.servers)}.log"), "w")
        self._logs.append(out)
        proc = subprocess.Popen(["bash", "-c", command], cwd=self.clone, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append((command, proc))
        stop = time.monotonic() + 30
        while time.monotonic() < stop:
            assert proc.poll() is None, (command, "exited", proc.returncode)
            if port is None and time.monotonic() > stop - 27 or port and _answers(port):
                return
            time.sleep(0.2)
        raise AssertionError(f"{command!r} did not answer on port {port}")

    def stop(self) -> None:
        for command, proc in self.servers:
            assert proc.poll() is None, (command, "exited", proc.returncode)
        for _, proc in self.servers:
            os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.servers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for out in self._logs:
            out.close()

    def cron(self, line: str) -> None:
        """A crontab line's command, from an empty environment, with the README's
        ``/srv/dashboard`` being this clone and its ``.venv`` this test's Python."""
        command = line.split(None, 5)[5].replace("/srv/dashboard", str(self.clone))
        venv = self.clone / ".venv" / "bin"
        venv.mkdir(parents=True, exist_ok=True)
        (venv / "flask").symlink_to(Path(sys.executable).parent / "flask")
        (self.clone / "dashboard.env").write_text("GIGA_SANDBOX=1\n")
        result = subprocess.run(["env", "-i", "sh", "-c", command], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_every_readme_command_works_as_written(tmp_path):
    for port in (5000, 8000, 9000):
        if _answers(port):
            pytest.fail(f"port {port} is taken: the README's servers need it")
    clone = _fresh_clone(tmp_path)
    session = Session(clone, tmp_path / "readme.log")
    ran = 0
    try:
        for language, marker, commands in _blocks((clone / "README.md").read_text()):
            if marker.startswith("skip"):
                continue
            if language == "crontab":
                for line in commands:
                    session.cron(line)
                ran += 1
                continue
            if language != "sh":
                continue
            env = dict(session.base)
            if marker == "deployment":
                env["GIGA_SANDBOX"] = "1"
            for command in commands:
                if command.startswith("export "):
                    if "…" not in command:
                        env.update(kv.split("=", 1) for kv in command.split()[1:])
                    continue
                if "…" in command:
                    continue  # a placeholder for a real deployment's value
                session.run(command, env)
            ran += 1
        received = "\n".join(p.read_text() for p in tmp_path.glob("server-*.log"))
        # the alerts walkthrough: the receiver printed the alert the poll sent
        assert "WithGiga billing: 50% of this period's plan credits used" in received
    finally:
        session.stop()
    assert ran >= 7  # run, production, users, poll, cron, receiver, alerts walkthrough
