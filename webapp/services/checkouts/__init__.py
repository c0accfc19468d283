"""A checkout's whole life, in one package, reading one way down:

``start``      a top-up or a plan change: the per-user limit, the pending row
               (``record``), one upstream call, the allowlist, settling, replays
``returns``    the notice for the user back from it, matching the figures
``reconcile``  what later balance readings show of it: credited, plan changed
``settlement`` what upstream said, kept while the database would not take it
               (``outbox``), and rows left pending past a bounded time
``statuses``   the one set of words for all of the above

Pages call these named functions with plain values (an amount, a plan, the
form's one-time token); nothing is passed in to be called back.
"""
from .returns import Return, came_back, notice
from .start import allowed, refuse, start_plan_change, start_top_up

__all__ = ["Return", "came_back", "notice", "allowed", "refuse", "start_plan_change",
           "start_top_up"]
