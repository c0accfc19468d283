"""How the API answers: figures as strings, times in RFC 3339 UTC, its parameters
checked (a 422 naming the bad one), lists in pages with an opaque cursor, and CSV."""
from __future__ import annotations

import base64
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from flask import request

from ..clock import app_clock
from ..downloads import beyond, csv_download, in_chunks
from ..errors import json_error
from ..extensions import db
from ..models import UTCDateTime

CENT = Decimal("0.01")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
#: how far from now a time or a day may be asked for (the history keeps far less)
REACH = timedelta(days=3650)
#: the ids a cursor may carry: our keys are 32-bit on PostgreSQL, and SQLite refuses more
#: than 64 bits, so a forged larger one must be a 422 before it reaches the database
LARGEST_ID = 2**31 - 1


class BadParameter(ValueError):
    """A query parameter the API cannot use; ``name`` is the parameter."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def refuse(exc: BadParameter):
    return json_error(422, "invalid_parameter", f"{exc.name}: {exc}")


def money(value) -> str | None:
    """An amount as a decimal string: cents at least, every digit kept beyond them."""
    if value is None:
        return None
    value = Decimal(value)
    cents = value.quantize(CENT)
    return format(cents if cents == value else value.normalize(), "f")


def rfc3339(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def wants_csv() -> bool:
    """``?format=csv``, or ``Accept: text/csv`` preferred to JSON. Raises ``BadParameter``."""
    asked = request.args.get("format")
    if asked is not None and asked not in ("json", "csv"):
        raise BadParameter("format", "use json or csv.")
    if asked is not None:
        return asked == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def whole(name: str, default: int, low: int, high: int) -> int:
    """An integer parameter from ``low`` to ``high``. Raises ``BadParameter``."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise BadParameter(name, f"use a whole number from {low} to {high}.")
    return int(raw)


def instant(name: str) -> datetime | None:
    """An RFC 3339 time (``2026-11-01T00:00:00Z``; a bare date is its midnight UTC), or
    ``None`` when not given. Raises ``BadParameter``."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("z", "Z"))
        if when.tzinfo is None:
            if "T" in raw or " " in raw:
                raise BadParameter(name, "give the offset too, like 2026-11-01T00:00:00Z.")
            when = when.replace(tzinfo=timezone.utc)
        return within(name, when.astimezone(timezone.utc))
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, BadParameter):
            raise
        raise BadParameter(name, "use an RFC 3339 time like 2026-11-01T00:00:00Z.") from None


def day(name: str) -> date | None:
    """A day ``YYYY-MM-DD`` (of the account's zone), or ``None``. Raises ``BadParameter``."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        found = date.fromisoformat(raw)
    except ValueError:
        raise BadParameter(name, "use a date like 2026-11-01 (a day of the account's "
                                 "time zone).") from None
    return within(name, found)


def within(name: str, value):
    """``value`` (a time or a day) when it is within ``REACH`` of now. Raises
    ``BadParameter``."""
    now = app_clock().now()
    if isinstance(value, datetime):
        near = now - REACH <= value <= now + REACH
    else:
        near = (now - REACH).date() <= value <= (now + REACH).date()
    if not near:
        raise BadParameter(name, "ask for a time within ten years of now.")
    return value


# -- the cursor --------------------------------------------------------------------------

def encode_cursor(kind: str, values) -> str:
    """An opaque cursor for ``kind``'s list, resuming after ``values``."""
    doc = [kind, [v.isoformat() if isinstance(v, (datetime, date)) else v for v in values]]
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()) \
        .decode().rstrip("=")


def decode_cursor(kind: str, types: tuple) -> tuple | None:
    """The values ``next_page`` resumes after, each of ``types`` (``datetime``, ``date``,
    ``int``), or ``None`` without one. Raises ``BadParameter``."""
    raw = request.args.get("next_page")
    if not raw:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        found, values = doc
        if found != kind or len(values) != len(types):
            raise ValueError(kind)
        found = tuple(t.fromisoformat(v) if t in (datetime, date) else v
                      for t, v in zip(types, values))
        for t, v in zip(types, found):
            if t is datetime and v.tzinfo is None:
                raise ValueError(v)
            if t in (datetime, date):
                within("next_page", v)
            elif type(v) is not int or not 0 <= v <= LARGEST_ID:  # 1.5, "7", true: no id
                raise ValueError(v)
        return found
    except (ValueError, TypeError, OverflowError, json.JSONDecodeError, UnicodeDecodeError):
        raise BadParameter("next_page", "this is not a cursor this list gave; pass "
                                        "next_page exactly as it came.") from None


# -- a list of rows ----------------------------------------------------------------------

def listing(kind: str, query, keys, as_json, csv_header, as_row, *, name: str,
            newest_first=False):
    """``query``'s rows in the order of ``keys``: a page as JSON (``data``, ``has_more``,
    ``next_page``), or every row as CSV, streamed. Raises ``BadParameter``."""
    if wants_csv():
        return csv_download(_with_header(csv_header, in_chunks(
            query, keys, as_row, newest_first=newest_first)), name)
    limit = whole("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after = decode_cursor(kind, tuple(_type(k) for k in keys))
    order = [k.desc() if newest_first else k.asc() for k in keys]
    page = query.order_by(None).order_by(*order).limit(limit + 1)
    if after is not None:
        page = page.where(beyond(keys, after, newest_first))
    found = db.session.scalars(page).all()
    more = len(found) > limit
    found = found[:limit]
    cursor = encode_cursor(kind, [getattr(found[-1], k.key) for k in keys]) if more else None
    return {"data": [as_json(r) for r in found], "has_more": more, "next_page": cursor}


def _type(column):
    """What a key column holds, for its cursor: a time or a whole number."""
    return datetime if isinstance(column.type, UTCDateTime) else int


def _with_header(header, rows):
    yield header
    yield from rows
