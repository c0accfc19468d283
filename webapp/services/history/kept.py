"""The last ``DAYS`` of snapshots, kept in each process's memory and brought up to
date with one small query (two when something was recorded), so a page over a
month of readings does not load a month of rows each time a reading arrives.

Only ``readings.record`` writes snapshots: it adds rows, moves the newest one's
``last_seen_at`` on, and deletes rows older than ``HISTORY_DAYS``. Bringing the
copy up to date is therefore: drop what the database no longer has at the old
end, and read the newest stretch again (from ``OVERLAP`` before the newest
snapshot: a row another process committed a moment late lands there). The
count of rows since the copy's horizon is checked against the database; when
it differs (the table emptied or refilled by hand, a row committed very late),
the copy is read again whole.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from ...extensions import db
from ...models import BalanceSnapshot
from . import readings
from .usage import Snapshot

#: kept in memory: the longest range (90 days) and the pace's week, with room
DAYS = 100
#: read again whole once the horizon is this much older than ``DAYS`` (memory stays bounded)
SLACK = timedelta(days=20)
#: how far before the newest snapshot each top-up reads again
OVERLAP = timedelta(minutes=5)

@dataclass(frozen=True)
class Recorded:
    """The history as recorded at one moment; every snapshot seen since ``horizon`` is
    in ``snaps`` (after the one in force at it), ``ids`` beside them. Never changed
    once made, so readers need no lock."""

    horizon: datetime
    snaps: list[Snapshot]
    ids: list[int]
    firsts: list[datetime]
    max_id: int | None

    @property
    def in_force_at_horizon(self) -> datetime | None:
        """When the snapshot in force at the horizon was first seen, if there is one."""
        return self.firsts[0] if self.firsts and self.firsts[0] < self.horizon else None

    @property
    def newest(self) -> tuple[int, Snapshot] | None:
        return (self.ids[-1], self.snaps[-1]) if self.snaps else None

    def between(self, since: datetime, until: datetime) -> list[Snapshot]:
        """``readings.snapshots(since, until)``, from memory when ``since`` is in it."""
        if since < self.horizon:
            return readings.snapshots(since, until)
        lo = bisect.bisect_left(self.firsts, since)
        hi = bisect.bisect_left(self.firsts, until)
        return self.snaps[max(lo - 1, 0):max(hi, lo)]


class Kept:
    """One app's copy of the recent history (``recorded`` brings it up to date)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._copy: Recorded | None = None
        self._seen = None  # the database's state when the copy was made

    def recorded(self, now: datetime) -> Recorded:
        """The history as the database has it now. Raises ``SQLAlchemyError``."""
        with self._lock:
            copy = self._copy
            horizon = copy.horizon if copy is not None else now - timedelta(days=DAYS)
            state = self._state(horizon)
            if copy is not None and state == self._seen:
                return copy  # nothing recorded since: no row to read
            max_id, oldest_first, count, in_force, _ = state
            if max_id is None:
                copy = _made(now - timedelta(days=DAYS), [], [])
            elif copy is None or copy.max_id is None or max_id < copy.max_id \
                    or horizon < now - timedelta(days=DAYS) - SLACK \
                    or in_force != copy.in_force_at_horizon:
                copy = self._whole(now)
            else:
                copy = self._topped_up(copy, oldest_first)
                if len(copy.firsts) - bisect.bisect_left(copy.firsts, horizon) != count:
                    copy = self._whole(now)
            self._copy, self._seen = copy, (state if copy.horizon == horizon else None)
            return copy

    @staticmethod
    def _state(horizon: datetime) -> tuple:
        """The newest id, the oldest first-seen time, the count of rows seen since
        ``horizon``, when the one in force at it was first seen and when the newest was
        last seen: one query of five index lookups."""
        t = BalanceSnapshot.__table__
        return tuple(db.session.execute(select(
            select(func.max(t.c.id)).scalar_subquery(),
            select(func.min(t.c.first_seen_at)).scalar_subquery(),
            select(func.count()).select_from(t).where(t.c.first_seen_at >= horizon)
            .scalar_subquery(),
            select(func.max(t.c.first_seen_at)).where(t.c.first_seen_at < horizon)
            .scalar_subquery(),
            select(t.c.last_seen_at).order_by(t.c.first_seen_at.desc(), t.c.id.desc())
            .limit(1).scalar_subquery())).one())

    @staticmethod
    def _whole(now: datetime) -> Recorded:
        horizon = now - timedelta(days=DAYS)
        rows = readings.rows_seen(horizon)
        return _made(horizon, [Snapshot(*row[1:]) for row in rows], [row[0] for row in rows])

    @staticmethod
    def _topped_up(copy: Recorded, oldest_first: datetime) -> Recorded:
        """``copy`` without what the database dropped, its newest stretch read again."""
        start = bisect.bisect_left(copy.firsts, oldest_first)  # older rows were deleted
        boundary = copy.firsts[-1] - OVERLAP if copy.firsts else copy.horizon
        cut = max(start, bisect.bisect_left(copy.firsts, boundary))
        fresh = readings.rows_seen(boundary, in_force=False)
        ids = copy.ids[start:cut] + [r[0] for r in fresh]
        return Recorded(copy.horizon, copy.snaps[start:cut] + [Snapshot(*r[1:]) for r in fresh],
                        ids, copy.firsts[start:cut] + [r[1] for r in fresh],
                        max([copy.max_id, *ids[len(ids) - len(fresh):]]) if ids else None)


def _made(horizon: datetime, snaps: list[Snapshot], ids: list[int]) -> Recorded:
    return Recorded(horizon, snaps, ids, [s.first_seen for s in snaps],
                    max(ids) if ids else None)


def recorded(now: datetime) -> Recorded:
    """This app's recent history, brought up to date. Raises ``SQLAlchemyError``."""
    kept = current_app.extensions.get("kept_history")
    if kept is None:
        kept = current_app.extensions.setdefault("kept_history", Kept())
    return kept.recorded(now)
