"""Cached readings as JSON text, with money as strings.

What the store holds is plain JSON, never a pickle, so whoever can write to
the store (Redis) can at worst make the dashboard show an error, never run
code in it. A value that does not decode is treated as absent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from ..giga import Billing, Plan


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


def _amount_or_word(value) -> dict:
    return {"word": value} if isinstance(value, str) else {"amount": str(value)}


def _from_amount_or_word(doc) -> Decimal | str:
    if "word" in doc:
        return str(doc["word"])
    return _decimal(doc["amount"])


def _decimal(text) -> Decimal:
    value = Decimal(text) if isinstance(text, str) else None
    if value is None or not value.is_finite():
        raise Undecodable(f"not an amount: {text!r}")
    return value


def encode_billing(billing: Billing) -> dict:
    return {"plan": billing.plan,
            "planCreditsRemaining": str(billing.plan_credits_remaining),
            "prepaidBalance": str(billing.prepaid_balance),
            "totalBalance": str(billing.total_balance),
            "periodStart": billing.period_start.isoformat(),
            "periodEnd": billing.period_end.isoformat()}


def decode_billing(doc: dict) -> Billing:
    return Billing(plan=str(doc["plan"]),
                   plan_credits_remaining=_decimal(doc["planCreditsRemaining"]),
                   prepaid_balance=_decimal(doc["prepaidBalance"]),
                   total_balance=_decimal(doc["totalBalance"]),
                   period_start=datetime.fromisoformat(doc["periodStart"]),
                   period_end=datetime.fromisoformat(doc["periodEnd"]))


def encode_plans(plans: list[Plan]) -> list:
    return [{"id": p.id, "name": p.name, "monthlyCredits": _amount_or_word(p.monthly_credits),
             "concurrentAgents": _amount_or_word(p.concurrent_agents),
             "maxDurationHours": _amount_or_word(p.max_duration_hours),
             "price": _amount_or_word(p.price)} for p in plans]


def decode_plans(doc: list) -> list[Plan]:
    return [Plan(id=str(p["id"]), name=str(p["name"]),
                 monthly_credits=_from_amount_or_word(p["monthlyCredits"]),
                 concurrent_agents=_from_amount_or_word(p["concurrentAgents"]),
                 max_duration_hours=_from_amount_or_word(p["maxDurationHours"]),
                 price=_from_amount_or_word(p["price"])) for p in doc]


CODECS = {"billing": (encode_billing, decode_billing),
          "plans": (encode_plans, decode_plans)}


def dumps(name: str, reading: Reading) -> str:
    """The JSON text for a fresh ``reading`` of ``name`` ("billing" or "plans")."""
    encode, _ = CODECS[name]
    return json.dumps({"fetchedAt": reading.fetched_at.isoformat(),
                       "value": encode(reading.value)}, separators=(",", ":"))


def loads(name: str, text: str | None) -> Reading | None:
    """The reading stored as ``text``, or ``None`` when there is none.

    Raises ``Undecodable`` when the text is not a reading of ``name``.
    """
    if text is None:
        return None
    _, decode = CODECS[name]
    try:
        doc = json.loads(text)
        when = datetime.fromisoformat(doc["fetchedAt"])
        if when.tzinfo is None:
            raise Undecodable("fetchedAt has no time zone")
        return Reading(decode(doc["value"]), when)
    except (ValueError, KeyError, TypeError, InvalidOperation, AttributeError) as exc:
        raise Undecodable(f"stored {name} reading does not decode: {exc}") from None
