"""A checkout attempt's statuses, in one place: how its start ended (the audit row's
outcome) and what later balance readings showed of it (``seen``)."""
from __future__ import annotations

from datetime import timedelta

# -- how the start ended (``AuditEntry.outcome``) ---------------------------------
#: its one upstream call may be under way
PENDING = "pending"
#: the user was sent to the checkout page upstream created
SENT = "sent to checkout"
#: the start's outcomes after which a checkout may exist without anyone knowing
STATUS_UNKNOWN = "status unknown"
#: left pending past ``settlement.pending_limit``: how it ended never reached the database
UNSETTLED = f"{STATUS_UNKNOWN}: not recorded"
UNSETTLED_DETAIL = ("The dashboard could not record how this attempt ended (its database was "
                    "busy). A checkout may have been started: check the balance.")

# -- what the readings showed (``AuditEntry.seen``), or the status worked out from them --
CREDITED = "credited"
PLAN_CHANGED = "plan changed"
CANCELLED = "cancelled at checkout"
NOT_SEEN = "not seen — check with WithGiga"
WAITING = "not yet seen"
#: how long a checkout may take to show in the balance before it is called unseen
SEEN_WITHIN = timedelta(hours=48)
