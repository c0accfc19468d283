"""Compressed pages, static files under hashed names with long lifetimes, money never cached."""
import gzip
import re
from pathlib import Path

import brotli

STATIC = Path(__file__).resolve().parents[1] / "static"


def test_pages_are_compressed_and_never_cached(client, auth):
    auth.login("finance")
    for encoding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        resp = client.get("/billing", headers={"Accept-Encoding": encoding})
        assert resp.headers["Content-Encoding"] == encoding
        assert "Total balance" in decode(resp.get_data()).decode()
        assert resp.headers["Cache-Control"] == "no-store"
    plain = client.get("/billing")
    assert "Content-Encoding" not in plain.headers and "Total balance" in plain.get_data(as_text=True)


def test_downloads_are_compressed_too(client, auth):
    auth.login("finance")
    resp = client.get("/audit/export.csv", headers={"Accept-Encoding": "gzip, br"})
    assert resp.headers["Content-Encoding"] == "br"  # streamed: brotli, chunk by chunk
    assert brotli.decompress(resp.get_data()).decode().startswith("time (UTC),")


def test_static_files_have_hashed_names_and_long_lifetimes(client, auth):
    html = client.get("/signin").get_data(as_text=True)
    href = re.search(r'href="(/static/app\.[0-9a-f]{12}\.css)"', html).group(1)
    with client.get(href, headers={"Accept-Encoding": "br, gzip"}) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "br"
        assert "max-age=31536000" in resp.headers["Cache-Control"]
        assert "immutable" in resp.headers["Cache-Control"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert brotli.decompress(resp.get_data()) == (STATIC / "app.css").read_bytes()
    with client.get(href, headers={"Accept-Encoding": "gzip"}) as gz:
        assert gzip.decompress(gz.get_data()) == (STATIC / "app.css").read_bytes()


def test_a_changed_file_gets_a_new_name(tmp_path):
    from webapp import assets
    first = assets.hashed_name("app.css", assets.digest(STATIC / "app.css"))
    changed = tmp_path / "app.css"
    changed.write_text((STATIC / "app.css").read_text() + "\n/* new */\n")
    assert assets.hashed_name("app.css", assets.digest(changed)) != first
