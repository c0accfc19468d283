"""What the gateway itself declines to do: its own decisions, not the API's answers.

They are ``GigaError``s, so a caller catches one class for everything that
can stop an upstream call; nothing was sent and the billing service said
nothing, so they carry no status or code (a request ID only for a
cool-down, from the 429 that started it), and ``never_sent`` is always
true, so callers can say "nothing was charged".
"""
from __future__ import annotations

from ..giga import GigaError


class Declined(GigaError):
    """The dashboard held a call back to protect the shared API key."""

    #: a declined read may fall back to the last good figures
    transient = True
    #: the audit trail's word for it
    reason = "declined"

    def __init__(self, message: str, *, retry_after: int | None = None,
                 request_id: str | None = None):
        super().__init__(message, retry_after=retry_after, request_id=request_id,
                         never_sent=True)

    def __repr__(self):
        return f"{type(self).__name__}(retry_after={self.retry_after!r})"


class CoolingDown(Declined):
    """The billing service answered 429 recently; nobody calls until its Retry-After.

    Carries the request ID of that 429, so every page during the pause can
    quote the answer that started it.
    """

    reason = "cooling down"


class BreakerOpen(Declined):
    """The billing service failed repeatedly; calls pause for the breaker's cool-down."""

    reason = "breaker open"


class BudgetSpent(Declined):
    """The dashboard's own share of the per-key limit is used up for this minute."""

    reason = "budget spent"
