"""How figures read on a page: money as ``$1,234.50``, words kept, and every date and
time in the zone the team chose (``services.zone``; UTC unless told), with its
abbreviation: ``Dec 20, 2026, 07:55 PST``."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from .clock import Clock

CENT = Decimal("0.01")
UTC = ZoneInfo("UTC")
#: a real minus sign in offsets (``UTC−08:00``), as print writes them
MINUS = "\u2212"
#: the time zone database's names for UTC itself
UTC_NAMES = ("UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu",
             "Etc/Zulu")


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


def heading(text: str) -> str:
    """A label as the start of a sentence: ``API token created`` and ``SSO linked`` keep
    their capitals (Jinja's ``capitalize`` lowers them: "Api token created")."""
    return text[:1].upper() + text[1:]


def day(value: datetime | date, zone: ZoneInfo = UTC) -> str:
    """``Mar 1, 2024``: a date as it is, a datetime as its date in ``zone``."""
    if isinstance(value, datetime):
        value = value.astimezone(zone)
    return f"{value:%b} {value.day}, {value.year}"


def short_day(value: datetime, zone: ZoneInfo = UTC) -> str:
    """``Mar 26``: a datetime's date in ``zone``, without the year (a date this month)."""
    local = value.astimezone(zone)
    return f"{local:%b} {local.day}"


def axis_money(value) -> str:
    """A chart axis label: ``$100`` for a whole amount (the axis's round steps), else as
    ``money``: short enough to read on a phone, where the chart is drawn small."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{'-' if value < 0 else ''}${abs(value):,.0f}"
    return money(value)


def offset(delta: timedelta | None) -> str:
    """``UTC−08:00``, ``UTC+05:45``, ``UTC+00:00``."""
    minutes = int((delta or timedelta(0)).total_seconds() // 60)
    sign = MINUS if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def abbreviation(local: datetime) -> str:
    """The zone's own abbreviation at ``local`` (``PST``, ``CEST``, ``UTC``); where the
    time zone database has none (it writes ``+0545``), the offset: ``UTC+05:45``."""
    name = local.tzname() or ""
    return name if name[:1].isalpha() else offset(local.utcoffset())


def clock(value: datetime, zone: ZoneInfo = UTC) -> str:
    """``14:05 PST``: the time of day in ``zone``, with its abbreviation."""
    local = value.astimezone(zone)
    return f"{local:%H:%M} {abbreviation(local)}"


def moment(value: datetime, zone: ZoneInfo = UTC) -> str:
    """``Dec 20, 2026, 07:55 PST``: an exact instant, to the minute, in ``zone``."""
    return f"{day(value, zone)}, {clock(value, zone)}"


def stamp(value: datetime | None, zone: ZoneInfo = UTC) -> str:
    """``2026-12-02 08:15:03 PST``: a row's time in a table, to the second, in ``zone``."""
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {abbreviation(local)}"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def countdown(until: datetime, now: datetime) -> str:
    """How long from ``now`` to ``until`` in words, to the nearest of its smallest unit:
    ``in 18 days 2 hours``, ``in 5 hours 12 minutes``, ``in 4 minutes``; ``now`` once
    it has come (within half a minute), ``already passed`` after."""
    minutes = round((until - now).total_seconds() / 60)
    if minutes < 1:
        return "now" if minutes == 0 else "already passed"
    if minutes >= 24 * 60 - 30:  # a day or more: to the hour (17 days 23 h 59 m is 18 days)
        days, hours = divmod(round(minutes / 60), 24)
        return "in " + _count(days, "day") + (f" {_count(hours, 'hour')}" if hours else "")
    hours, minutes = divmod(minutes, 60)
    if hours:
        return "in " + _count(hours, "hour") + (f" {_count(minutes, 'minute')}" if minutes
                                                else "")
    return "in " + _count(minutes, "minute")


def zone_label(zone: ZoneInfo, at: datetime) -> str:
    """The zone named for a page, with its offset from UTC at ``at``:
    ``America/Los_Angeles, UTC−08:00``; UTC itself is just ``UTC``."""
    if zone.key in UTC_NAMES:
        return "UTC"
    return f"{zone.key}, {offset(at.astimezone(zone).utcoffset())}"


def init_formatting(app, zone=lambda: UTC):
    """The filters every template uses; ``zone()`` says which time zone dates and times
    are shown in (the app factory hands in ``services.zone.display_zone``)."""
    app.jinja_env.filters.update(
        money=money, axis_money=axis_money, number=number, countdown=countdown, heading=heading,
        day=lambda value: day(value, zone()), clock=lambda value: clock(value, zone()),
        moment=lambda value: moment(value, zone()), stamp=lambda value: stamp(value, zone()),
        in_zone=lambda value: value.astimezone(zone()))

    def shown_zone() -> str:
        """The zone named as the page shows it now (``America/Los_Angeles, UTC−08:00``)."""
        return zone_label(zone(), app.extensions.get("clock", Clock()).now())

    app.jinja_env.globals["zone_label"] = shown_zone
    app.jinja_env.tests["word"] = lambda v: isinstance(v, str)
