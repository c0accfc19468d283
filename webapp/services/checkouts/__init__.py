"""A checkout's whole life, in one package, reading one way down:

``start``      a top-up or a plan change: the per-user limit, the pending row
               (``record``), one upstream call, the allowlist, settling, replays
``returns``    the notice for the user back from it, matching the figures
``reconcile``  what later balance readings show of it: credited, plan changed
``settlement`` what upstream said, kept while the database would not take it
               (``outbox``), and rows left pending past a bounded time
``statuses``   the one set of words for all of the above

Pages call these named functions with plain values (the user, an amount, a plan,
the form's one-time token); nothing is passed in to be called back. They answer
results (``Started``) or raise the errors ``start`` names; the pages turn those
into responses.

The package imports none of its modules itself: the history imports
``reconcile`` from below the rest (``start`` reads the account, whose forecast
reads the history), so pages import the module they need.
"""
