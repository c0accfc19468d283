"""Benchmark, run on demand (not part of the tests):  python bench/benchmark.py

Prints:
  1. page latency over upstream latency with caching off;
  2. upstream requests per minute with 50 concurrent viewers for a minute;
  3. scale-out on Redis: 1, 2 and 4 gunicorn processes sharing one
     redis-server, 50 concurrent viewers each time -- page views per
     second, p50 and p99 latency, and upstream calls per minute (which
     must stay flat as processes are added). Load comes from wrk
     (apt-get install wrk) or, without it, from Python threads;
  4. the warm page's p50 and p99 when 50 viewers each view it once a
     second, on the default single process;
  5. a sign-in flood on one account from 20 addresses: a bystander's page
     latency meanwhile, and the owner's sign-in from a clean address;
  6. the cold page over one upstream round trip (200 ms, every read
     upstream, alert rules on), one page every 1.1 s: on one process, and
     spread over three servers sharing one Redis; without history, and
     over a month of readings every 5 minutes;
  7. the cold page over a year of readings every 5 minutes (period, 90 days,
     12 months; one process, and three servers on one Redis), and one
     worker's resident memory after 300 pages, a third of them year charts;
  8. the warm page side by side with an earlier release (--against, default
     2975077): 50 signed-in viewers on one process, alternating, three runs
     each (needs git and this checkout's history).
Options: --duration S (seconds of viewer load, default 60), --quick,
--only N[,N...] (run only those figures), --against REV (figure 8).
"""
from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import logging
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

from webapp import create_app, prepare  # noqa: E402
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
            # headers and body go out as two writes: without this, Nagle holds the body
            # for the client's delayed ACK (40 ms on Linux), which no real API server does
            disable_nagle_algorithm = True

            def do_GET(self):
                upstream.times.append(time.monotonic())
                time.sleep(upstream.latency)
                body = bodies.get(self.path, "{}").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # an alert webhook, when a figure points one here
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

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
            "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
            "DATABASE_URL": f"sqlite:///{db}",
            "INSTANCE_PATH": str(db.parent), **extra}


def build_app(upstream, db, **extra):
    app = prepare(create_app(app_env(upstream, db, **extra)))
    with app.app_context():
        from webapp.services.users import create_user, UserError
        try:
            create_user("viewer@bench.example", "viewer", PASSWORD)
        except UserError:
            pass
    return app


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def csrf_token(session: requests.Session, base: str) -> str:
    """The sign-in form's CSRF token, for ``session``."""
    page = session.get(base + "/signin").text
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def signed_in(base) -> requests.Session:
    session = requests.Session()
    token = csrf_token(session, base)
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
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(Path(cwd) / "gunicorn.conf.py"),
                             "--bind", f"127.0.0.1:{port}", app_spec],
                            cwd=cwd, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/", timeout=5)
            return proc, base
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start for {app_spec}")


@contextlib.contextmanager
def gunicorn_servers(count: int, env: dict, shared: bool):
    """``count`` gunicorn servers of this checkout with ``env`` (on one fresh Redis when
    ``shared``); yields their base addresses, and stops them all (and Redis) after."""
    redis_proc = None
    if shared:
        redis_proc, env["REDIS_URL"] = redis_server()
    procs, bases = zip(*(gunicorn("wsgi:app", env, ROOT) for _ in range(count)))
    try:
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def run_all(threads) -> None:
    """Start ``threads`` and wait for every one of them."""
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def load(url, seconds, cookie, connections=50) -> dict:
    """Page views per second and latency percentiles (ms) against ``url``."""
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s",
                              "--latency", "-H", f"Cookie: {cookie}", url],
                             capture_output=True, text=True, check=True).stdout
        if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
            raise RuntimeError(f"{url} answered errors under load:\n{out}")

        def ms(label):
            value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
            return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
        return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                "p50": ms("50"), "p99": ms("99")}
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def worker():
        s = requests.Session()
        while time.monotonic() < stop:
            t = time.perf_counter()
            if s.get(url, headers={"Cookie": cookie}).status_code != 200:
                raise RuntimeError(f"{url} answered an error under load")
            latencies.append(time.perf_counter() - t)
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def redis_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def scale_out(tmp: Path, seconds: float, ttl: str = "5") -> None:
    """1, 2 and 4 processes on one Redis: throughput, latency, upstream calls a minute."""
    if not shutil.which("redis-server"):
        print("3. scale-out: skipped (apt-get install redis-server)")
        return
    print(f"3. scale-out on Redis, 50 concurrent viewers for {seconds:.0f} s each, "
          f"BILLING_CACHE_TTL={ttl}, {os.cpu_count()} cores, 8 threads a process:")
    print("   | processes | page views/s | p50 | p99 | upstream calls a minute |")
    print("   | --- | --- | --- | --- | --- |")
    for processes in (1, 2, 4):
        redis_proc, redis_url = redis_server()
        upstream = Upstream(latency=0.05)
        db = tmp / f"scale-{processes}.db"
        build_app(upstream, db)
        env = app_env(upstream, db, REDIS_URL=redis_url, BILLING_CACHE_TTL=ttl,
                      WEB_CONCURRENCY=str(processes))
        proc, base = gunicorn("wsgi:app", env, ROOT)
        try:
            session = signed_in(base)
            cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
            load(base + "/billing", 2, cookie)  # warm-up
            upstream.times.clear()
            figures = load(base + "/billing", seconds, cookie)
            per_minute = len(upstream.times) * 60 / seconds
        finally:
            proc.terminate()
            proc.wait(10)
            upstream.server.shutdown()
            redis_proc.terminate()
            redis_proc.wait(10)
        print(f"   | {processes} | {figures['rps']:.0f} | {figures['p50']:.0f} ms "
              f"| {figures['p99']:.0f} ms | {per_minute:.0f} |")


def paced_viewers(tmp: Path, seconds: float, viewers: int = 50) -> None:
    """The warm page as 50 people see it: each views it once a second (open loop),
    against the default deployment (one gunicorn process, no Redis)."""
    upstream = Upstream(latency=0.05)
    db = tmp / "paced.db"
    build_app(upstream, db)
    proc, base = gunicorn("wsgi:app", app_env(upstream, db), ROOT)
    latencies: list[float] = []
    try:
        sessions = [signed_in(base) for _ in range(viewers)]
        stop = time.monotonic() + seconds

        def viewer(session, offset):
            due = time.monotonic() + offset
            while due < stop:
                time.sleep(max(0.0, due - time.monotonic()))
                t = time.perf_counter()
                if session.get(base + "/billing").status_code != 200:
                    raise RuntimeError("the page answered an error")
                latencies.append(time.perf_counter() - t)
                due += 1.0
        run_all([threading.Thread(target=viewer, args=(s, i / viewers))
                 for i, s in enumerate(sessions)])
    finally:
        proc.terminate()
        proc.wait(10)
    latencies.sort()
    print(f"4. warm page, {viewers} viewers each viewing once a second for {seconds:.0f} s, "
          f"one process: {len(latencies)} views, p50 {latencies[len(latencies) // 2] * 1000:.0f}"
          f" ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms (a page cache is "
          "worth its complexity only if p99 > 100 ms)")


def seed_month(app) -> int:
    """A month of readings every 5 minutes before now, so the alert check and the chart
    work over what a real month of history holds."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from webapp.extensions import db
    from webapp.models import BalanceSnapshot

    now = datetime.now(timezone.utc)
    start, end = now - timedelta(days=12), now + timedelta(days=18)
    steps = 30 * 288
    rows = []
    for i in range(steps):
        when = now - timedelta(minutes=5 * (steps - i))
        left = max(Decimal(0), Decimal(100) - Decimal(i % 3456) / 40) if when >= start \
            else Decimal(100)
        rows.append(dict(first_seen_at=when, last_seen_at=when, plan="starter-pro",
                         plan_credits_remaining=left, prepaid_balance=Decimal(50),
                         total_balance=left + 50, period_start=start if when >= start
                         else start - timedelta(days=30), period_end=end if when >= start
                         else start))
    with app.app_context():
        db.session.execute(BalanceSnapshot.__table__.insert(), rows)
        db.session.commit()
    return len(rows)


def seed_year(app, days: int = 365) -> int:
    """``days`` of readings every 5 minutes before now, in 30-day periods: plan credits
    run down on a working-week pace and come back at each period's end, prepaid
    credit stays; the usage rollups are then worked out as an upgrade would."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from webapp.extensions import db
    from webapp.models import BalanceSnapshot
    from webapp.services.history.readings import rebuild_usage

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    period = timedelta(days=30)
    end = now + timedelta(days=18)
    steps = days * 288
    rows = []
    left, current = Decimal(100), None
    with app.app_context():
        for i in range(steps):
            when = now - timedelta(minutes=5 * (steps - i))
            p_end = end - period * ((end - when) // period)
            p_start = p_end - period
            if p_start != current:  # plan credits come back at the period's end
                left, current = Decimal(100), p_start
            # busier on weekdays: about $3.20 a weekday, $1.15 a weekend day
            left = max(Decimal(0), left - (Decimal("0.011") if when.weekday() < 5
                                           else Decimal("0.004")))
            rows.append(dict(first_seen_at=when, last_seen_at=when, plan="starter-pro",
                             plan_credits_remaining=left, prepaid_balance=Decimal(50),
                             total_balance=left + 50, period_start=p_start, period_end=p_end))
            if len(rows) == 10_000:
                db.session.execute(BalanceSnapshot.__table__.insert(), rows)
                rows.clear()
        if rows:
            db.session.execute(BalanceSnapshot.__table__.insert(), rows)
        rebuild_usage()
        db.session.commit()
    return steps


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gunicorn_worker(master: subprocess.Popen) -> int:
    """The pid of ``master``'s one worker."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return int(children[0])


def year_cold_page(tmp: Path, samples: int) -> None:
    """The cold page over a year of readings, per range, on one process and on three
    servers sharing one Redis; then one worker's memory after 300 pages."""
    upstream = Upstream(latency=0.2)
    cold = dict(BILLING_CACHE_TTL="0", PLANS_CACHE_TTL="0",
                UPSTREAM_BUDGET_PER_MINUTE="100000", ALERT_BALANCE_BELOW="10",
                WEB_CONCURRENCY="1")
    client = GigaClient(upstream.url, "giga_sk_bench")
    db = tmp / "year.db"
    app = build_app(upstream, db)
    started = time.perf_counter()
    rows = seed_year(app)
    print(f"7. cold page over a year of readings ({rows:,} every 5 minutes, rollups built "
          f"in {time.perf_counter() - started:.0f} s), one every 1.1 s, upstream 200 ms, "
          f"{samples} pages each:")
    print("   | range | servers | upstream p50 | page p50 | page p90 | page / upstream |")
    print("   | --- | --- | --- | --- | --- | --- |")
    setups = [(1, False)] + ([(3, True)] if shutil.which("redis-server") else [])
    for servers, shared in setups:
        with gunicorn_servers(servers, app_env(upstream, db, **cold), shared) as bases:
            sessions = [signed_in(base) for base in bases]
            for key in ("period", "90", "365"):
                print(f"   | {key} | {servers}{' on one Redis' if shared else ''} | "
                      + paced_pages(client, sessions, bases, f"/billing?range={key}", samples))
    # memory: one worker, the README's deployment, 300 pages of which 100 year charts
    proc, base = gunicorn("wsgi:app", app_env(upstream, db, WEB_CONCURRENCY="1"), ROOT)
    try:
        session = signed_in(base)
        worker = gunicorn_worker(proc)
        first = rss_mb(worker)
        for i in range(300):
            key = ("365", "period", "90")[i % 3]
            if session.get(f"{base}/billing?range={key}").status_code != 200:
                raise RuntimeError("the page answered an error")
        print(f"   one worker's resident memory: {first:.0f} MB after sign-in, "
              f"{rss_mb(worker):.0f} MB after 300 pages (100 of them 12-month charts); "
              "the aim is <= 80 MB")
    finally:
        proc.terminate()
        proc.wait(10)
    print("   (the aim is <= 1.05x on three servers, whatever the range)")
    upstream.server.shutdown()


def warm_side_by_side(tmp: Path, against: str, seconds: float, runs: int = 3) -> None:
    """Warm page views a second, this checkout against release ``against``, each on one
    gunicorn process with 50 signed-in viewers, alternating."""
    old = tmp / f"release-{against}"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", against],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    print(f"8. warm page, 50 signed-in viewers on one process for {seconds:.0f} s, "
          f"this checkout and release {against} alternating, {runs} runs each:")
    print("   | code | page views/s | p50 | p99 |")
    print("   | --- | --- | --- | --- |")
    found: dict[str, list[dict]] = {"this checkout": [], against: []}
    for run in range(runs):
        for label, root in (("this checkout", ROOT), (against, old)):
            upstream = Upstream(latency=0.05)
            db = tmp / f"warm-{run}-{root.name}.db"
            env = app_env(upstream, db, PYTHONPATH=str(root))
            # each release makes its own tables and bench user, with its own code
            subprocess.run([sys.executable, "-c", SETUP_USER], cwd=root,
                           env={**os.environ, **env}, check=True)
            proc, base = gunicorn("wsgi:app", env, root)
            try:
                session = signed_in(base)
                cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
                load(base + "/billing", 2, cookie)  # warm-up
                found[label].append(load(base + "/billing", seconds, cookie))
            finally:
                proc.terminate()
                proc.wait(10)
                upstream.server.shutdown()
    for label, figures in found.items():
        rps = statistics.median(f["rps"] for f in figures)
        p50 = statistics.median(f["p50"] for f in figures)
        p99 = statistics.median(f["p99"] for f in figures)
        print(f"   | {label} | {rps:.0f} (runs: {runs_text(figures)}) "
              f"| {p50:.0f} ms | {p99:.0f} ms |")


def runs_text(figures: list[dict]) -> str:
    return ", ".join(f"{f['rps']:.0f}" for f in figures)


#: run in a release's own folder: its tables, and the benchmark's viewer
SETUP_USER = f"""
from webapp import create_app, prepare
from webapp.services.users import create_user, UserError
app = prepare(create_app())
with app.app_context():
    try:
        create_user("viewer@bench.example", "viewer", {PASSWORD!r})
    except UserError:
        pass
"""


def paced_pages(client, sessions, bases, path: str, samples: int) -> str:
    """One direct upstream read, then (0.55 s later) one page of ``path`` taken from the
    servers ``bases`` in turn, every 1.1 s, ``samples`` times after three to warm up:
    the table cells "upstream p50 | page p50 | page p90 | page / upstream"."""
    direct, page = [], []
    for i in range(samples + 3):
        started = time.perf_counter()
        client.get_billing()
        upstream_s = time.perf_counter() - started
        time.sleep(0.55)
        started = time.perf_counter()
        if sessions[i % len(bases)].get(bases[i % len(bases)] + path).status_code != 200:
            raise RuntimeError("the page answered an error")
        if i >= 3:  # the first views warm each process's code paths
            direct.append(upstream_s)
            page.append(time.perf_counter() - started)
        time.sleep(max(0.0, 0.55 - (time.perf_counter() - started)))
    d, p = statistics.median(direct), statistics.median(page)
    p90 = sorted(page)[int(len(page) * 0.9)]
    return f"{d * 1000:.0f} ms | {p * 1000:.0f} ms | {p90 * 1000:.0f} ms | {p / d:.3f}x |"


def paced_cold_page(tmp: Path, samples: int) -> None:
    """One cold page every 1.1 s (caching off: both reads go upstream, 200 ms): its
    latency over one direct upstream round trip, on one gunicorn process and over
    three gunicorn servers sharing one Redis (pages taken round-robin)."""
    upstream = Upstream(latency=0.2)
    cold = dict(BILLING_CACHE_TTL="0", PLANS_CACHE_TTL="0",
                UPSTREAM_BUDGET_PER_MINUTE="100000", ALERT_WEBHOOK_URL=upstream.url + "/hook",
                ALERT_BALANCE_BELOW="10", WEB_CONCURRENCY="1")
    client = GigaClient(upstream.url, "giga_sk_bench")
    print(f"6. cold page, one every 1.1 s, upstream 200 ms, {samples} pages each, "
          "alert rules on, without history and over a month of readings:")
    print("   | history | servers | upstream p50 | page p50 | page p90 | page / upstream |")
    print("   | --- | --- | --- | --- | --- | --- |")
    setups = [(1, False)] + ([(3, True)] if shutil.which("redis-server") else [])
    for (servers, shared), month in ((setup, month) for month in (False, True)
                                     for setup in setups):
        db = tmp / f"cold-{servers}-{month}.db"
        app = build_app(upstream, db)
        rows = seed_month(app) if month else 0
        with gunicorn_servers(servers, app_env(upstream, db, **cold), shared) as bases:
            sessions = [signed_in(base) for base in bases]
            figures = paced_pages(client, sessions, bases, "/billing", samples)
        print(f"   | {f'{rows:,} readings' if rows else 'none'} "
              f"| {servers}{' on one Redis' if shared else ''} | {figures}")
    print("   (the aim is <= 1.05x on three servers)")
    upstream.server.shutdown()


def signin_flood(tmp: Path, seconds: float, addresses: int = 20, attackers: int = 8) -> None:
    """Wrong passwords for one account from ``addresses`` client addresses (behind a
    trusted proxy), ``attackers`` at a time, while a signed-in bystander loads the page."""
    upstream = Upstream(latency=0.05)
    db = tmp / "flood.db"
    app = build_app(upstream, db)
    with app.app_context():
        from webapp.services.users import create_user
        create_user("owner@bench.example", "finance", PASSWORD)
    proc, base = gunicorn("wsgi:app", app_env(upstream, db, TRUST_PROXY="1"), ROOT)
    stop = time.monotonic() + seconds
    answers: dict[int, int] = {}
    try:
        bystander = signed_in(base)

        def attacker(n):
            session = requests.Session()
            token = csrf_token(session, base)
            i = n
            while time.monotonic() < stop:
                address = f"198.51.100.{i % addresses + 1}"
                status = session.post(base + "/signin", headers={"X-Forwarded-For": address},
                                      data={"email": "owner@bench.example", "password": "wrong",
                                            "csrf_token": token}).status_code
                answers[status] = answers.get(status, 0) + 1
                i += attackers
        latencies, owner_ms = [], []

        def bystander_then_owner():
            time.sleep(1.0)  # the account is under attack by now
            while time.monotonic() < stop - 0.5:
                started = time.perf_counter()
                assert bystander.get(base + "/billing").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.2)
            owner = requests.Session()
            token = csrf_token(owner, base)
            started = time.perf_counter()
            resp = owner.post(base + "/signin", headers={"X-Forwarded-For": "203.0.113.7"},
                              data={"email": "owner@bench.example", "password": PASSWORD,
                                    "csrf_token": token})
            owner_ms.append((time.perf_counter() - started) * 1000)
            assert resp.url.endswith("/billing"), resp.status_code
        run_all([threading.Thread(target=attacker, args=(n,)) for n in range(attackers)]
                + [threading.Thread(target=bystander_then_owner)])
    finally:
        proc.terminate()
        proc.wait(10)
    latencies.sort()
    print(f"5. sign-in flood on one account from {addresses} addresses ({attackers} at a time, "
          f"{seconds:.0f} s; answers {dict(sorted(answers.items()))}): a bystander's page p50 "
          f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms "
          f"({len(latencies)} views); the owner's sign-in from a clean address {owner_ms[0]:.0f} ms")


def main():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="short runs, rough figures")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8", help="figures to run, e.g. 1,6")
    parser.add_argument("--against", default="2975077", help="the release figure 8 compares")
    args = parser.parse_args()
    duration = 10.0 if args.quick else args.duration
    only = {int(n) for n in args.only.split(",")}
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        figures = [
            (1, lambda: latency_ratio(tmp, 10 if args.quick else 30)),
            (2, lambda: (viewers_per_minute(tmp, duration, "30"),
                         viewers_per_minute(tmp, duration, "0"))),
            (3, lambda: scale_out(tmp, 15 if args.quick else 60)),
            (4, lambda: paced_viewers(tmp, 15 if args.quick else 60)),
            (5, lambda: signin_flood(tmp, 10 if args.quick else 30)),
            (6, lambda: paced_cold_page(tmp, 20 if args.quick else 60)),
            (7, lambda: year_cold_page(tmp, 15 if args.quick else 40)),
            (8, lambda: warm_side_by_side(tmp, args.against, 10 if args.quick else 20)),
        ]
        for number, run in figures:
            if number in only:
                run()


if __name__ == "__main__":
    main()
