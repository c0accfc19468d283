"""Benchmark, run on demand (not part of the tests):  python bench/benchmark.py

Prints three figures:
  1. page latency over upstream latency with caching off;
  2. upstream requests per minute with 50 concurrent viewers for a minute;
  3. page views per second with a warm cache next to a bare Flask "hello"
     app, both under the same gunicorn settings (gunicorn.conf.py), loaded
     by wrk (apt-get install wrk) or, without wrk, by Python threads.
Options: --duration S (seconds of viewer load, default 60), --quick.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webapp import create_app  # noqa: E402
from webapp.giga import GigaClient  # noqa: E402
from webapp.sandbox.state import PLANS, fresh_account  # noqa: E402

PASSWORD = "benchmark-password"


class Upstream:
    """A contract-shaped upstream that answers after ``latency`` seconds and counts calls."""

    def __init__(self, latency=0.0):
        self.latency = latency
        self.times: list[float] = []
        account = fresh_account()
        billing = {"plan": account["plan"], "planCreditsRemaining": 74.5, "prepaidBalance": 50,
                   "totalBalance": 124.5, "currentPeriodStart": account["periodStart"],
                   "currentPeriodEnd": account["periodEnd"]}
        bodies = {"/api/billing": json.dumps({"success": True, "data": {"billing": billing}}),
                  "/api/billing/plans": json.dumps({"success": True, "data": {"plans": PLANS}})}
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                upstream.times.append(time.monotonic())
                time.sleep(upstream.latency)
                body = bodies.get(self.path, "{}").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def busiest_minute(self) -> int:
        """The most calls in any 60-second window of the run."""
        times = sorted(self.times)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - 60:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def app_env(upstream: Upstream, db: Path, **extra) -> dict:
    return {"GIGA_API_URL": upstream.url, "GIGA_API_KEY": "giga_sk_bench",
            "SECRET_KEY": secrets.token_hex(32), "DATABASE_URL": f"sqlite:///{db}",
            "INSTANCE_PATH": str(db.parent), **extra}


def build_app(upstream, db, **extra):
    app = create_app(app_env(upstream, db, **extra))
    with app.app_context():
        from webapp.users.service import create_user, UserError
        try:
            create_user("viewer@bench.example", "viewer", PASSWORD)
        except UserError:
            pass
    return app


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def signed_in(base) -> requests.Session:
    session = requests.Session()
    resp = session.get(base + "/signin")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', resp.text).group(1)
    resp = session.post(base + "/signin", data={"email": "viewer@bench.example",
                                                "password": PASSWORD, "csrf_token": token})
    assert resp.url.endswith("/billing"), resp.status_code
    return session


def latency_ratio(tmp: Path, samples: int) -> None:
    upstream = Upstream(latency=0.2)
    # the budget would (rightly) start serving cached figures after 30 calls: lift it here
    app = build_app(upstream, tmp / "latency.db", BILLING_CACHE_TTL="0", PLANS_CACHE_TTL="0",
                    UPSTREAM_BUDGET_PER_MINUTE="100000")
    server, base = serve(app)
    session = signed_in(base)
    client = GigaClient(upstream.url, "giga_sk_bench")
    direct, page = [], []
    for _ in range(samples):
        t = time.perf_counter()
        client.get_billing()
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert session.get(base + "/billing").status_code == 200
        page.append(time.perf_counter() - t)
    server.shutdown()
    d, p = statistics.median(direct), statistics.median(page)
    print(f"1. caching off, both reads every view: upstream {d * 1000:.0f} ms, "
          f"page {p * 1000:.0f} ms -> {p / d:.2f}x upstream latency (target <= 1.1x)")


def viewers_per_minute(tmp: Path, duration: float, ttl: str) -> int:
    upstream = Upstream(latency=0.05)
    app = build_app(upstream, tmp / f"viewers-{ttl}.db", BILLING_CACHE_TTL=ttl,
                    ACTIONS_PER_MINUTE="1000")
    server, base = serve(app)
    sessions = [signed_in(base) for _ in range(50)]
    start = time.monotonic()
    stop = start + duration
    views = [0]

    def viewer(session):
        while time.monotonic() < stop:
            session.get(base + "/billing")
            views[0] += 1
    threads = [threading.Thread(target=viewer, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.shutdown()
    busiest = upstream.busiest_minute()
    print(f"2. 50 viewers signing in then viewing for {duration:.0f} s, BILLING_CACHE_TTL={ttl}: "
          f"{views[0]} page views, {len(upstream.times)} upstream requests in all, "
          f"at most {busiest} in any minute (target <= 30)")
    return busiest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(app_spec, env, cwd) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                             "--bind", f"127.0.0.1:{port}", app_spec],
                            cwd=cwd, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/", timeout=1)
            return proc, base
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start for {app_spec}")


def load(url, seconds, cookie=None) -> float:
    """Requests per second against ``url``: wrk when installed, else Python threads."""
    if shutil.which("wrk"):
        cmd = ["wrk", "-t2", "-c16", f"-d{int(seconds)}s", url]
        if cookie:
            cmd[1:1] = ["-H", f"Cookie: {cookie}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise RuntimeError(f"{url} answered errors under load:\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = [0]
    stop = time.monotonic() + seconds

    def worker():
        s = requests.Session()
        headers = {"Cookie": cookie} if cookie else {}
        while time.monotonic() < stop:
            s.get(url, headers=headers)
            count[0] += 1
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / seconds


def warm_page_vs_hello(tmp: Path, seconds: float) -> None:
    upstream = Upstream(latency=0.05)
    db = tmp / "gunicorn.db"
    build_app(upstream, db)  # creates the tables and the viewer
    env = app_env(upstream, db, BILLING_CACHE_TTL="3600")
    dash, dash_base = gunicorn("wsgi:app", env, ROOT)
    hello, hello_base = gunicorn("hello:app", {}, ROOT / "bench")
    try:
        session = signed_in(dash_base)
        session.get(dash_base + "/billing")  # warm the cache
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        load(dash_base + "/billing", 2, cookie)  # warm-up
        page_rps = load(dash_base + "/billing", seconds, cookie)
        load(hello_base + "/", 2)
        hello_rps = load(hello_base + "/", seconds)
    finally:
        for proc in (dash, hello):
            proc.terminate()
            proc.wait(10)
    print(f"3. gunicorn (gunicorn.conf.py), warm cache: dashboard {page_rps:.0f} views/s, "
          f"hello {hello_rps:.0f} req/s -> {page_rps / hello_rps:.2f}x hello (target >= 0.5x)"
          f"; upstream calls during the run: {len(upstream.times)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="short runs, rough figures")
    args = parser.parse_args()
    duration = 10.0 if args.quick else args.duration
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        latency_ratio(tmp, 10 if args.quick else 30)
        viewers_per_minute(tmp, duration, "30")
        viewers_per_minute(tmp, duration, "0")
        warm_page_vs_hello(tmp, 5 if args.quick else 15)


if __name__ == "__main__":
    main()
