"""A live dashboard on loopback (CSRF on, as in production) and Debian's Chromium."""
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from ..conftest import make_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


class Live:
    """``app`` served on loopback (on ``port`` when another party must know it first)."""

    def __init__(self, app, sandbox, port=0):
        self.app = app
        self.sandbox = sandbox
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def live(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, WTF_CSRF_ENABLED=True, BILLING_CACHE_TTL="0",
                   UPSTREAM_GET_RETRIES="0")
    server = Live(app, sandbox)
    yield server
    server.stop()


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def page(request, browser):
    """A fresh page; every journey runs with JavaScript on and off."""
    context = browser.new_context(java_script_enabled=request.param,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def new_page(browser):
    """Open pages with chosen options; closed at the end of the test."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page
    yield make
    for context in contexts:
        context.close()


def sign_in(page, live, role):
    page.goto(live.url + "/signin")
    page.get_by_label("Email").fill(f"{role}@demo.test")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/billing")
