"""Take the README's screenshots (docs/*.png) in headless Chromium against the sandbox.

Run on demand:  python scripts/screenshots.py
"""
import sys
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webapp import create_app, prepare  # noqa: E402

DOCS = ROOT / "docs"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main():
    tmp = Path(tempfile.mkdtemp())
    app = prepare(create_app({"TESTING": True, "INSTANCE_PATH": str(tmp),
                              "GIGA_SANDBOX": "1"}))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    DOCS.mkdir(exist_ok=True)
    shots = [("dashboard-desktop", "admin", {"viewport": {"width": 1280, "height": 900}}, "/billing"),
             ("dashboard-phone", "finance", {"viewport": {"width": 375, "height": 812},
                                             "is_mobile": True, "device_scale_factor": 2}, "/billing"),
             ("dashboard-dark", "finance", {"viewport": {"width": 1280, "height": 900},
                                            "color_scheme": "dark"}, "/billing"),
             ("confirm-plan-change", "admin", {"viewport": {"width": 1280, "height": 800}},
              "/billing/plans/pro"),
             ("dashboard-viewer", "viewer", {"viewport": {"width": 1280, "height": 900}}, "/billing"),
             ("remove-user", "admin", {"viewport": {"width": 1280, "height": 700}},
              "/users/3/delete"),
             ("usage-30-days", "finance", {"viewport": {"width": 1280, "height": 900}},
              "/billing?range=30#usage"),
             ("usage-phone-dark", "finance", {"viewport": {"width": 375, "height": 812},
                                              "is_mobile": True, "device_scale_factor": 2,
                                              "color_scheme": "dark"}, "/billing#usage")]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for name, role, options, path in shots:
            page = browser.new_context(**options).new_page()
            page.goto(base + "/signin")
            page.get_by_label("Email").fill(f"{role}@demo.test")
            page.get_by_label("Password").fill("demo")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/billing")
            page.goto(base + path)
            page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
            print("wrote", DOCS / f"{name}.png")
        # the sandbox checkout page, reached the way a user reaches it
        page = browser.new_context(viewport={"width": 1280, "height": 700}).new_page()
        page.goto(base + "/signin")
        page.get_by_label("Email").fill("finance@demo.test")
        page.get_by_label("Password").fill("demo")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Amount (USD)").fill("250")
        page.get_by_role("button", name="Continue to checkout").click()
        page.wait_for_url("**/checkout/**")
        page.screenshot(path=str(DOCS / "sandbox-checkout.png"), full_page=True)
        print("wrote", DOCS / "sandbox-checkout.png")
        # a refused amount, then the trail that records both
        page.go_back()
        page.get_by_label("Amount (USD)").fill("12.345")
        page.get_by_role("button", name="Continue to checkout").click()
        page.goto(base + "/audit")
        page.screenshot(path=str(DOCS / "audit-trail.png"), full_page=True)
        print("wrote", DOCS / "audit-trail.png")
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()
