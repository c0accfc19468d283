"""Reading a top-up amount typed by a person.

Only plain ASCII digits with an optional ``.`` and at most two decimals
pass (a leading ``$`` and correctly grouped thousands commas are allowed,
because people type them). ``Decimal`` alone would accept ``NaN``,
``Infinity``, ``1e3`` and non-ASCII digits; none of those can reach
upstream from here.
"""
from __future__ import annotations

import re
from decimal import Decimal

from ..formatting import money

_PLAIN = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+", re.ASCII)


class AmountError(ValueError):
    """The amount cannot be accepted; ``str(err)`` is the message for the field."""


def range_text(minimum: Decimal, maximum: Decimal) -> str:
    return f"From {money(minimum)} to {money(maximum)}, in dollars and cents."


def parse_amount(text, minimum: Decimal, maximum: Decimal) -> Decimal:
    """The amount in ``text`` as a ``Decimal`` with two places.

    Raises ``AmountError`` with a message a person can act on.
    """
    text = (text or "").strip()
    if not text:
        raise AmountError("Enter an amount.")
    if text.startswith("$"):
        text = text[1:].strip()
    if text.startswith("-") or text.startswith("−"):
        raise AmountError(f"Enter a positive amount. {range_text(minimum, maximum)}")
    if len(text) > 32:
        raise AmountError(f"That amount is far too long. {range_text(minimum, maximum)}")
    if re.fullmatch(r"[\d.,]*[eE][+-]?\d*", text, re.ASCII):
        raise AmountError("Write the amount in plain digits, like 50 or 12.50 (no exponents).")
    if not _PLAIN.fullmatch(text):
        raise AmountError("Enter the amount as a number, like 50 or 12.50.")
    digits = text.replace(",", "")
    if "." in digits and len(digits.split(".", 1)[1]) > 2:
        raise AmountError("Use at most two decimal places (cents).")
    amount = Decimal(digits)
    if amount <= 0:
        raise AmountError(f"Enter an amount above zero. {range_text(minimum, maximum)}")
    if amount < minimum:
        raise AmountError(f"The smallest top-up is {money(minimum)}.")
    if amount > maximum:
        raise AmountError(f"The largest top-up is {money(maximum)}.")
    return amount.quantize(Decimal("0.01"))
