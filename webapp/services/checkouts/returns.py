"""Coming back from a checkout: a notice, and a fresh read, only for the user who
started it in this session, once -- a bare ``?checkout=success`` link earns
neither, so nobody can spend the shared upstream budget by reloading it -- and
a notice that matches the figures under it: "credited" (or "done") when the
fresh reading already shows the checkout, "being processed" only while not."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app, session
from flask_login import current_user

from ...clock import app_clock
from ...formatting import clock
from ..arrivals import settle
from ..zone import display_zone
from .reconcile import checkout_seen, mark_cancelled
from .start import RETURNING_FROM
from .statuses import CREDITED, PLAN_CHANGED

NOTICES = {
    # the balance below already shows it (a reading reconciled the checkout)
    "seen": ("success", "Thank you. {What} is {done}: the figures below include it."),
    "success": ("success", "Thank you. Your payment for {what} is being processed; it is not "
                "in the figures below yet (read at {read}). Reload in a minute to see it."),
    "cancel": ("info", "Checkout of {what} was cancelled. Nothing was charged and your balance "
               "is unchanged."),
}
#: how a checkout reads once the balance shows it
DONE = {CREDITED: "credited", PLAN_CHANGED: "done"}


@dataclass(frozen=True)
class Return:
    """A user back from a checkout they started: ``outcome`` is "success" or "cancel"."""

    outcome: str
    what: str
    entry_id: int

    @property
    def wants_fresh_figures(self) -> bool:
        return self.outcome == "success"


def came_back(outcome: str | None) -> Return | None:
    """The checkout the current user is back from (the ``checkout`` query value), once;
    a cancel is recorded at once (it is not a pending payment)."""
    started = session.pop(RETURNING_FROM, None) if outcome in ("success", "cancel") else None
    if not isinstance(started, dict):
        return None
    back = Return(outcome, started["what"], started["entry"])
    if outcome == "cancel":
        mark_cancelled(back.entry_id, current_user.email, app_clock().now())
    return back


def notice(back: Return, read_at: datetime) -> tuple[str, str]:
    """``(kind, words)`` for the page under which the figures read at ``read_at`` are.

    The fresh reading is recorded first, here (it is what reconciles the checkout),
    rather than after the page as other readings are.
    """
    if back.outcome == "success":
        settle(current_app)
        seen = checkout_seen(back.entry_id)
        if seen in DONE:
            kind, text = NOTICES["seen"]
            return kind, text.format(What=back.what[0].upper() + back.what[1:], done=DONE[seen])
    kind, text = NOTICES[back.outcome]
    return kind, text.format(what=back.what, read=clock(read_at, display_zone()))
