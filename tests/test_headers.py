"""Security headers on every response."""
import pytest


@pytest.mark.parametrize("path", ["/signin", "/billing", "/static/app.css", "/nope"])
def test_headers_everywhere(client, auth, path):
    auth.login("admin")
    resp = client.get(path)
    resp.close()
    csp = resp.headers["Content-Security-Policy"]
    for part in ("script-src 'self'", "frame-ancestors 'none'", "object-src 'none'",
                 "base-uri 'none'"):
        assert part in csp
    assert "unsafe-inline" not in csp
    assert "https://checkout.stripe.com" in csp  # form-action must let the redirect through
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in resp.headers


def test_no_inline_script_in_pages(client, auth):
    auth.login("admin")
    for path in ("/billing", "/audit", "/users", "/billing/plans/pro"):
        html = client.get(path).get_data(as_text=True)
        assert "<script" not in html and " onclick=" not in html and "style=" not in html


def test_hsts_over_https(client):
    assert "max-age=" in client.get("/signin", base_url="https://localhost").headers[
        "Strict-Transport-Security"]


def test_forwarded_scheme_honoured_only_when_trusted(tmp_path, sandbox):
    from .conftest import make_app
    fwd = {"X-Forwarded-Proto": "https"}
    plain = make_app(tmp_path / "a", SANDBOX=sandbox).test_client()
    assert "Strict-Transport-Security" not in plain.get("/signin", headers=fwd).headers
    trusted = make_app(tmp_path / "b", SANDBOX=sandbox, TRUST_PROXY="1").test_client()
    assert "Strict-Transport-Security" in trusted.get("/signin", headers=fwd).headers


def test_errors_are_pages_not_tracebacks(client, auth, app, monkeypatch):
    auth.login("admin")
    import webapp.billing.views as views

    def boom(*a, **kw):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(views, "load_overview", boom)
    resp = client.get("/billing")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 500 and "Traceback" not in html and "secret internals" not in html
    assert "Something went wrong" in html
