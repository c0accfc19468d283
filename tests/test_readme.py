"""Every command in the README works as written, pasted into a fresh clone.

Each ``sh`` block runs in a copy of the repository as a clone has it (no
``instance/``, no ``node_modules``), with no ``GIGA_*`` setting but what
the block itself sets. A block the README says runs "with the deployment's
environment" (marked ``<!-- readme-test: deployment -->``) gets
``GIGA_SANDBOX=1`` as that environment. Servers are started, must answer, and
are stopped at the end; a block marked ``<!-- readme-test: skip ... -->`` says
why it is not run. The cron line runs under an empty environment, as cron runs
it. Installing is ``.ci/run``'s job (the README's own test command): here the
README's ``.venv`` and its activated ``PATH`` stand for the environment running
these tests. One test pastes the run command, install included, into a fresh
virtual environment; and whatever the commands make, ``.gitignore`` covers.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
#: a password the rules accept, typed at every prompt
PASSWORD = "violet-anchor-meadow-42"
#: commands that keep running, and the loopback port each answers on (None: just alive)
SERVERS = [(re.compile(r"\bflask .*\brun\b"), 5000), (re.compile(r"^gunicorn "), 8000),
           (re.compile(r"webapp\.alerts\.receiver --port (\d+)"), "port"),
           (re.compile(r"billing poll --every"), None)]
#: installing is .ci/run's job: the environment running this test has done it
INSTALL = re.compile(r"^(?:(?:python3 -m venv \S+|(?:\S*/)?pip install [^&]*|npm install)"
                     r"\s*&&\s*)+")
#: the run command's server, where the README says to open it
RUN_PORT = 5000


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


def _section(text: str, title: str) -> str:
    """The README's ``## title`` section, up to the next one."""
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _one_command(text: str, title: str) -> str:
    """The one command of the first block of a README section (Run it, Test it)."""
    language, _, commands = next(_blocks(_section(text, title)))
    assert language == "sh" and len(commands) == 1, commands
    return commands[0]


def _stand_in_venv(clone: Path) -> None:
    """The README's ``.venv`` in ``clone``, standing for the environment that runs these
    tests (``.ci/run`` made it with the README's own command): its ``python``,
    ``flask`` and ``gunicorn``, which work from any environment, cron's empty one too."""
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    for name, module in (("python", ""), ("python3", ""), ("flask", " -m flask"),
                         ("gunicorn", " -m gunicorn"), ("pip", " -m pip")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {python}{module} "$@"\n')
        (bin_dir / name).chmod(0o755)


def _track(clone: Path) -> None:
    """Make ``clone`` a git repository with all its files staged, so that whatever is
    made in it later and ``.gitignore`` misses shows up as untracked."""
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=clone, capture_output=True, check=True)


def _made_and_not_ignored(clone: Path) -> list[str]:
    """What appeared in a ``_track``-ed clone that ``.gitignore`` does not cover."""
    return subprocess.run(["git", "ls-files", "-o", "--exclude-standard", "--directory"],
                          cwd=clone, capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _stop(proc: subprocess.Popen) -> None:
    """Ends a server started in a session of its own, with all it started."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


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
                                          "SECRET_KEY", "API_TOKEN_", "METRICS_", "WEB_CONCURRENCY"))}
        # as with the README's .venv activated: its flask, gunicorn and python come first,
        # though pytest itself may run from that environment without activating it
        self.base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                             self.base.get("PATH", os.defpath)])
        _stand_in_venv(clone)

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
        """Stops every server, then fails if any had exited before being asked to
        (stopping the others first, so none is left running after a failure)."""
        died = [(command, proc.returncode) for command, proc in self.servers
                if proc.poll() is not None]
        for proc in [proc for _, proc in self.servers if proc.returncode is None]:
            _stop(proc)
        for out in self._logs:
            out.close()
        assert not died, died

    def cron(self, line: str) -> None:
        """A crontab line's command, from an empty environment, with the README's
        ``/srv/dashboard`` being this clone (its ``.venv`` this test's Python)."""
        command = line.split(None, 5)[5].replace("/srv/dashboard", str(self.clone))
        (self.clone / "dashboard.env").write_text("GIGA_SANDBOX=1\n")
        result = subprocess.run(["env", "-i", "sh", "-c", command], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_every_readme_command_works_as_written(tmp_path):
    for port in (5000, 8000, 9000):
        if _answers(port):
            pytest.fail(f"port {port} is taken: the README's servers need it")
    clone = _fresh_clone(tmp_path)
    _track(clone)
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
    assert _made_and_not_ignored(clone) == []


class _Inputs(HTMLParser):
    """A page's ``<input>`` values by name."""

    def __init__(self, page: str):
        super().__init__()
        self.values: dict[str, str] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.values[attrs["name"]] = attrs.get("value") or ""


@pytest.mark.slow
def test_the_run_command_works_pasted_into_a_fresh_virtual_environment(tmp_path):
    """The README's run command as written, its venv and pip install really done: the
    server answers where the README says and its demo sign-in works."""
    if _answers(RUN_PORT):
        pytest.fail(f"port {RUN_PORT} is taken: the README's run command needs it")
    clone = _fresh_clone(tmp_path)
    _track(clone)
    readme = (clone / "README.md").read_text()
    command = _one_command(readme, "Run it")
    admin = re.search(r"^\| `([^`]+)` \| `([^`]+)` \| admin \|$", readme, re.M)
    email, password = admin.groups()  # the README's demo table
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIGA_", "DATABASE_", "REDIS_", "SECRET_KEY", "API_TOKEN_", "VIRTUAL_ENV",
                                "PYTHONPATH", "PYTHONHOME"))}
    # as a stock Debian or Ubuntu Python refuses it (PEP 668): no pip install outside a venv
    env["PIP_REQUIRE_VIRTUALENV"] = "1"
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # a venv, an install from the package index and a first start: minutes at worst
        stop = time.monotonic() + 300
        while not _answers(RUN_PORT):
            assert proc.poll() is None, (command, "exited", proc.returncode, log.read_text())
            assert time.monotonic() < stop, (command, "did not answer", log.read_text())
            time.sleep(0.5)
        base = f"http://127.0.0.1:{RUN_PORT}"
        with requests.Session() as browser:
            form = browser.get(f"{base}/signin", timeout=30)
            assert form.status_code == 200
            token = _Inputs(form.text).values["csrf_token"]
            signed_in = browser.post(f"{base}/signin", timeout=30, allow_redirects=False,
                                     data={"csrf_token": token, "email": email,
                                           "password": password})
            assert signed_in.status_code == 302, signed_in.text
            assert signed_in.headers["Location"] == "/billing"
            page = browser.get(f"{base}/billing", timeout=30, allow_redirects=False)
            assert page.status_code == 200 and email in page.text
    finally:
        if proc.poll() is None:
            _stop(proc)
    # it ran from the venv it made, and nothing it made is left for git to pick up
    assert (clone / ".venv" / "pyvenv.cfg").is_file()
    assert (clone / ".venv" / "bin" / "flask").read_text().startswith(
        f"#!{clone / '.venv' / 'bin' / 'python'}")
    assert _made_and_not_ignored(clone) == []


def test_ci_runs_the_readme_test_command():
    command = _one_command((ROOT / "README.md").read_text(), "Test it")
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert steps[-1] == command
