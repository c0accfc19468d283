"""The app's only way upstream: named billing operations over a shared store.

``BillingGateway`` (``service.py``) caches, coalesces, budgets and guards
every call; the store behind it is ``MemoryStore`` (one process) or
``RedisStore`` (any number of processes and hosts); what it declines to
do raises a ``Declined`` of its own (``errors.py``).
"""
from .codec import Reading
from .errors import BreakerOpen, BudgetSpent, CoolingDown, Declined
from .service import BillingGateway
from .store import MemoryStore

__all__ = ["BillingGateway", "Reading", "MemoryStore", "Declined", "CoolingDown",
           "BreakerOpen", "BudgetSpent", "make_store"]


def make_store(redis_url: str | None, *, clock=None):
    """The store for this deployment: Redis when ``redis_url`` is set, else in-process."""
    if not redis_url:
        return MemoryStore(clock)
    from .redis_store import RedisStore

    return RedisStore(redis_url, prefix="giga:", clock=clock)
