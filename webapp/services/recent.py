"""Values a process keeps for a few seconds instead of asking the database on every page:
one helper for each such copy, on the app's injected clock."""
from __future__ import annotations

from flask import current_app


def recently(name: str, key, seconds: float, make, *, fresh: bool = False,
             keep_if=lambda value: True):
    """``make()``, kept in this process under ``name`` and reused while ``key`` is the
    same and it is younger than ``seconds`` (``fresh``: made now, whatever is kept); a
    value ``keep_if`` refuses is returned but not kept. Raises what ``make`` raises."""
    app = current_app
    now = app.extensions["clock"].monotonic()
    kept = app.extensions.get(("recent", name))
    if not fresh and kept is not None and kept[0] == key and now - kept[1] < seconds:
        return kept[2]
    value = make()
    if keep_if(value):
        remember(name, key, value)
    return value


def remember(name: str, key, value) -> None:
    """Keep ``value`` under ``name`` and ``key`` from now (what was just written)."""
    app = current_app
    app.extensions[("recent", name)] = (key, app.extensions["clock"].monotonic(), value)
