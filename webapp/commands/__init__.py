"""The ``flask`` commands: ``users``, ``billing poll`` and ``sandbox``. Each runs on a
prepared app (``processes.prepare``: the schema up to date, the demo users as the
mode wants them), whichever command it is."""
from __future__ import annotations

import functools

from flask import current_app
from flask.cli import AppGroup


class PreparedGroup(AppGroup):
    """An ``AppGroup`` whose commands first ``prepare`` the app they run on."""

    def command(self, *args, **kwargs):
        def decorate(f):
            @functools.wraps(f)
            def prepared(*a, **kw):
                from ..processes import prepare

                prepare(current_app._get_current_object())
                return f(*a, **kw)
            return super(PreparedGroup, self).command(*args, **kwargs)(prepared)
        return decorate
