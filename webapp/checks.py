"""Checks of untrusted text that every layer may ask: the checkout redirect allowlist
and control characters. Plain functions of their arguments, with nothing to render."""
from __future__ import annotations

from urllib.parse import urlsplit


def checkout_url_allowed(url, hosts, origins=()) -> bool:
    """True only for ``https://<allowed host>[:443]/...`` or an exact allowed origin.

    Look-alike hosts, userinfo, backslashes, whitespace, other schemes and
    other ports are refused.
    """
    if not isinstance(url, str) or not url.isascii() or len(url) > 2048:
        return False
    if any(c in url for c in "\\ \t\r\n\x00") or any(ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if "@" in parts.netloc or not parts.hostname:
        return False
    host = parts.hostname
    if parts.scheme == "https" and host in hosts and port in (None, 443) \
            and parts.netloc.lower() in (host, f"{host}:443"):
        return True
    return f"{parts.scheme}://{parts.netloc}" in origins


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a NUL or another control character (no column takes a NUL on
    PostgreSQL, and none belongs in an address or a filter)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)
