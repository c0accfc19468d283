"""Cached readings as JSON text: the API's own documents, read back by the API
client's own parsers (one decoder, whichever way a balance arrived).

What the store holds is plain JSON, never a pickle, so whoever can write to
the store (Redis) can at worst make the dashboard show an error, never run
code in it. A value that does not decode (or fails the client's checks) is
treated as absent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from ..giga import GigaError
from ..giga.client import billing_document, parse_billing, parse_plans, plans_document


@dataclass(frozen=True)
class Reading:
    """A value read from upstream, when it was read, and whether it is stale.

    ``error`` is the fault that made the gateway fall back to this reading.
    """

    value: object
    fetched_at: datetime
    stale: bool = False
    error: Exception | None = None


class Undecodable(ValueError):
    """A stored value is not a reading this version of the dashboard wrote."""


#: each name's value as the API writes it (inside its envelope's key), and the client's
#: parser for that: a value read back from the store passes the very checks an answer
#: from the API does (size, whole cents, the period's order)
CODECS = {"billing": ("billing", billing_document, parse_billing),
          "plans": ("plans", plans_document, parse_plans)}
#: figures stored as strings (never a float in between), as numbers for the parser
FIGURES = frozenset({"planCreditsRemaining", "prepaidBalance", "totalBalance",
                     "monthlyCredits", "concurrentAgents", "maxDurationHours", "price"})


def _as_strings(doc):
    if isinstance(doc, Decimal):
        return format(doc, "f")
    if isinstance(doc, dict):
        return {k: _as_strings(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_as_strings(v) for v in doc]
    return doc


def _as_numbers(doc):
    """Stored figures back to ``Decimal`` for the parser; a word stays a word (and a
    word where money belongs fails the parser's check)."""
    if isinstance(doc, list):
        return [_as_numbers(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if key in FIGURES and isinstance(value, str):
            try:
                value = Decimal(value)
            except InvalidOperation:
                pass
        out[key] = _as_numbers(value) if isinstance(value, (dict, list)) else value
    return out


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def milliseconds(when: datetime) -> int:
    """``when`` (aware) as whole milliseconds since the epoch: the stamp a stored reading
    begins with, and what a reading's age is told by wherever it is compared."""
    return (when - EPOCH) // timedelta(milliseconds=1)


def dumps(name: str, reading: Reading) -> str:
    """The JSON text for a fresh ``reading`` of ``name`` ("billing" or "plans"), money
    as strings. It begins with the stamp the store tells a fresh value by
    (``store.STAMP``: ``{"at":<milliseconds>``), so Redis can tell it too."""
    key, document, _ = CODECS[name]
    return json.dumps({"at": milliseconds(reading.fetched_at),
                       "fetchedAt": reading.fetched_at.isoformat(),
                       "value": _as_strings(document(reading.value)[key])},
                      separators=(",", ":"))


def loads(name: str, text: str | None) -> Reading | None:
    """The reading stored as ``text``, or ``None`` when there is none.

    Raises ``Undecodable`` when the text is not a reading of ``name``, or its figures
    would not pass as an answer from the API.
    """
    if text is None:
        return None
    key, _, parse = CODECS[name]
    try:
        doc = json.loads(text)
        when = datetime.fromisoformat(doc["fetchedAt"])
        if when.tzinfo is None:
            raise Undecodable("fetchedAt has no time zone")
        return Reading(parse({key: _as_numbers(doc["value"])}), when)
    except (ValueError, KeyError, TypeError, AttributeError, GigaError) as exc:
        raise Undecodable(f"stored {name} reading does not decode: {exc}") from None
