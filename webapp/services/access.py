"""The role guard: every view names the permission it needs."""
from __future__ import annotations

from functools import wraps

from flask_login import current_user, login_required

from ..errors import render_error


def permission_required(permission, on_refusal=None):
    """Require a signed-in user whose role grants ``permission``.

    Anyone else gets the polite 403 page; ``on_refusal(*args, **kwargs)``
    runs first (the billing actions use it to record the refusal) and may
    answer instead (a 429 when the user keeps trying).
    """
    def decorate(view):
        @wraps(view)
        @login_required
        def guarded(*args, **kwargs):
            if not current_user.can(permission):
                answer = on_refusal(*args, **kwargs) if on_refusal is not None else None
                return answer or render_error(403)
            return view(*args, **kwargs)
        return guarded
    return decorate
