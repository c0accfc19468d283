"""How figures read on a page: money as ``$1,234.50``, dates in UTC, words kept."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def money(value) -> str:
    """``Decimal('1234.5')`` -> ``$1,234.50``; ``-3.2`` -> ``-$3.20``; a word stays a word."""
    if isinstance(value, str):
        return value.capitalize()
    if value is None:
        return "—"
    value = Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def number(value) -> str:
    """A count or credit figure: ``1,234`` or ``74.5``; a word stays a word."""
    if isinstance(value, str):
        return value.capitalize()
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{value:,.0f}"
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def day(value: datetime | date) -> str:
    """``Mar 1, 2024`` (a datetime is shown as its UTC date)."""
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
    return f"{value:%b} {value.day}, {value.year}"


def axis_money(value) -> str:
    """A chart axis label: ``$100`` for a whole amount (the axis's round steps), else as
    ``money``: short enough to read on a phone, where the chart is drawn small."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{'-' if value < 0 else ''}${abs(value):,.0f}"
    return money(value)


def time_utc(value: datetime) -> str:
    """``14:05 UTC``."""
    return value.astimezone(timezone.utc).strftime("%H:%M UTC")


def init_formatting(app):
    app.jinja_env.filters.update(money=money, axis_money=axis_money, number=number, day=day, time_utc=time_utc)
    app.jinja_env.tests["word"] = lambda v: isinstance(v, str)
