"""The time zone the team's days and times are shown in: the account's choice (the
``account_settings`` row, changed on the settings page), else the
``DISPLAY_TIMEZONE`` setting.

Each process keeps a copy and reads the row again at most every
``REFRESH_SECONDS``, so a change made in one process reaches every other within
that, and a page costs no query of its own most of the time. A request holds on to
the zone it first saw, so one page never shows two. Outside a request (the alert
sender's thread, a command) the same copy serves. A database that cannot be read
(busy, away, a schema without the table yet) leaves the last zone known, or the
setting: showing a time never fails a page.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

from flask import current_app, g, has_request_context
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import trail
from ..database import busy
from ..extensions import db
from ..models import AccountSettings
from ..settings import NOT_A_PLACE, zone_problem

log = logging.getLogger(__name__)

#: how stale a process's copy of the account's choice may be
REFRESH_SECONDS = 5.0
#: the areas of the IANA names offered on the settings page (``Area/Place``); the
#: database's older aliases (``US/Pacific``, ``EST5EDT``) still work in the setting
AREAS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia",
         "Europe", "Indian", "Pacific")


@dataclass(frozen=True)
class ZoneChoice:
    """The zone in force, and whether the account chose it (``chosen``: the name kept
    in the row, ``None`` when the ``DISPLAY_TIMEZONE`` setting applies), by whom, when."""

    zone: ZoneInfo
    chosen: str | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None


class _Copy:
    """One process's copy of the choice, for one app."""

    def __init__(self):
        self.lock = threading.Lock()
        self.choice: ZoneChoice | None = None
        self.read_at = 0.0
        self.refreshing = False
        #: the last problem said in the log, so a spell of them is one line
        self.said: str | None = None


def display_zone() -> ZoneInfo:
    """The zone days and times are shown in now (needs an app context). Raises nothing."""
    return current_choice().zone


def current_choice(*, fresh: bool = False) -> ZoneChoice:
    """The zone in force and where it comes from; ``fresh`` reads the row now (the
    settings page, which must show what was just saved). Raises nothing."""
    if has_request_context() and not fresh and "_display_zone" in g:
        return g._display_zone
    app = current_app._get_current_object()
    copy = app.extensions.setdefault("display_zone", _Copy())
    now = app.extensions["clock"].monotonic()
    with copy.lock:
        choice = copy.choice
        # one thread reads the row; the others go on with the copy they have
        due = fresh or choice is None or (now - copy.read_at >= REFRESH_SECONDS
                                          and not copy.refreshing)
        if due:
            copy.refreshing = True
    if due:
        try:
            choice = _read(app, copy, choice, fresh)
        finally:
            with copy.lock:
                copy.choice, copy.read_at, copy.refreshing = choice, now, False
    if has_request_context():
        g._display_zone = choice
    return choice


def _read(app, copy: _Copy, known: ZoneChoice | None, fresh: bool) -> ZoneChoice:
    """The row's choice as it is now; ``known`` (else the setting) when it cannot be read.
    While the database is busy it is not asked (a busy page must not wait for it
    again), unless ``fresh``."""
    if not fresh and busy(app):
        return known or ZoneChoice(setting_zone(app))
    query = select(AccountSettings.display_timezone, AccountSettings.updated_by,
                   AccountSettings.updated_at).where(AccountSettings.id == 1)
    try:
        # a connection of its own: the request's transaction (perhaps failed, perhaps
        # half-way through a change) is none of this read's business
        with db.engine.connect() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        kept = known.zone if known else setting_zone(app)
        _say(copy, "unreadable", "the time zone chosen on the settings page could not be "
             "read (%s); showing %s meanwhile", str(exc).splitlines()[0][:160], kept.key)
        return known or ZoneChoice(kept)
    name, by, at = row if row is not None else (None, None, None)  # None: never chosen
    if name is not None and zone_problem(name):
        _say(copy, "unknown", "the time zone chosen on the settings page, %r, is not one "
             "this machine knows (an older time zone database?); showing %s "
             "(DISPLAY_TIMEZONE) instead", name, setting_zone(app).key)
        name = None
    else:
        copy.said = None
    return ZoneChoice(ZoneInfo(name) if name else setting_zone(app), name, by, at)


def _say(copy: _Copy, kind: str, message: str, *args) -> None:
    """A problem of ``kind`` in the log, once while it lasts."""
    if copy.said != kind:
        copy.said = kind
        log.warning(message, *args)


def setting_zone(app=None) -> ZoneInfo:
    """The ``DISPLAY_TIMEZONE`` setting's zone (checked at start)."""
    return ZoneInfo((app or current_app).config.get("DISPLAY_TIMEZONE", "UTC"))


@cache
def offered_zones() -> tuple[str, ...]:
    """The IANA zone names the settings page offers, sorted: ``UTC`` and every
    ``Area/Place`` name of the machine's time zone database (read once a process)."""
    names = {n for n in available_timezones()
             if n.split("/")[0] in AREAS and "/" in n and n not in NOT_A_PLACE}
    return ("UTC", *sorted(names))


def offered_offsets(at: datetime) -> tuple[tuple[str, timedelta], ...]:
    """Each offered zone with its offset from UTC at ``at``, worked out once an hour
    (clocks change on the hour): reading 490 zones' files takes a tenth of a second,
    and keeping them all open would hold their files in every process."""
    return _offsets(at.replace(minute=0, second=0, microsecond=0))


@lru_cache(maxsize=2)
def _offsets(hour: datetime) -> tuple[tuple[str, timedelta], ...]:
    return tuple((name, hour.astimezone(ZoneInfo(name)).utcoffset())
                 for name in offered_zones())


def in_words(name: str | None, app=None) -> str:
    """A kept choice for the audit trail: ``America/Los_Angeles``, or for none the
    setting's zone, named as such: ``UTC (DISPLAY_TIMEZONE)``."""
    return name if name else f"{setting_zone(app).key} (DISPLAY_TIMEZONE)"


def choose(name: str | None, by: str, at: datetime) -> tuple[str, str]:
    """Keep ``name`` as the account's zone (``None``: the ``DISPLAY_TIMEZONE`` setting
    again), checked by the caller with ``settings.zone_problem``; recorded on the audit
    trail, from → to, in the same transaction. Returns ``(before, after)`` in words, and
    this process shows the new zone from its next request on (every other within
    ``REFRESH_SECONDS``). Raises ``SQLAlchemyError`` when the database will not take
    it: nothing changed, nothing recorded."""
    _make_row()
    # a write first: the row is this transaction's before it is read (on SQLite and
    # PostgreSQL alike), so of two saves at once the second records the first's zone
    db.session.execute(update(AccountSettings).where(AccountSettings.id == 1)
                       .values(updated_by=by))
    row = db.session.get(AccountSettings, 1, populate_existing=True)
    before, after = in_words(row.display_timezone), in_words(name)
    row.display_timezone, row.updated_by, row.updated_at = name, by, at
    trail.stage(trail.ZONE_CHANGED, "done" if after != before else "done, unchanged",
                subject="time zone", detail=f"from: {before} → to: {after}")
    db.session.commit()
    current_choice(fresh=True)
    return before, after


def _make_row() -> None:
    """The one ``account_settings`` row, made on first use (another process may make it
    at the same moment: then theirs is used)."""
    if db.session.get(AccountSettings, 1) is not None:
        return
    db.session.add(AccountSettings(id=1))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
