"""Per-user limits, all on one mechanism: the shared store's sliding window.

Each limit is a number of things one signed-in user may do a minute: start
or be refused checkouts by the rules (``ACTIONS_PER_MINUTE``), send a form the
field checks refuse (``TYPOS_PER_MINUTE``: typos, apart, so they never use up
the checkouts),
download CSVs (10), send a test alert (1), save the settings page (10). The window is ``store.take`` -- one Lua script on Redis's own
clock with ``REDIS_URL`` (so every process and host shares it), with this
process's fallback share while Redis is away -- which is why no rate-limit
library is used: its storage would be a second connection with other
fallback rules, and the checkout limit must count refusals and feed the
audit trail's summary row, which a per-route decorator cannot.

This module only counts and answers ``(taken, wait)``; the 429 page a user past a
limit sees is the web layer's (``errors.render_too_many``).
"""
from __future__ import annotations

from flask import current_app
from flask_login import current_user

#: the limits, by name: how many a minute (a number, or the setting that says)
PER_MINUTE = {"actions": "ACTIONS_PER_MINUTE", "typos": "TYPOS_PER_MINUTE", "exports": 10, "alert-test": 1,
              "settings": 10, "tokens": 10,
              # each change is a row on the trail and a password check or two (scrypt,
              # zxcvbn): one's own password, or an admin setting someone else's; a wrong
              # current password counts too (sign-in throttling bounds those apart)
              "passwords": 10}


def take(name: str) -> tuple[bool, float]:
    """Spend one of the current user's ``name`` allowance for this minute; returns
    ``(taken, seconds until one is free)``."""
    limit = PER_MINUTE[name]
    per_minute = current_app.config[limit] if isinstance(limit, str) else limit
    return current_app.extensions["giga_store"].take(f"{name}:{current_user.id}",
                                                     per_minute, 60)
