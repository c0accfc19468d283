from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from ..clock import app_clock
from ..services import limits
from ..services.zone import choose, current_choice, setting_zone
from ..security import permission_required
from ..errors import render_too_many
from .forms import ZoneForm, zone_choices

bp = Blueprint("account", __name__, url_prefix="/settings")


def _page(form, choice, status=200):
    """The page, with ``choice`` the zone in force as read afresh (what was just saved
    shows, whichever process saved it)."""
    now = app_clock().now()
    form.zone.choices = zone_choices(setting_zone(), now)
    return render_template("account/settings.html", form=form, choice=choice,
                           now=now), status


@bp.get("")
@permission_required("settings")
def index():
    choice = current_choice(fresh=True)
    return _page(ZoneForm(formdata=None, zone=choice.chosen or ""), choice)


@bp.post("")
@permission_required("settings")
def save():
    form = ZoneForm()
    if not form.validate():
        choice = current_choice(fresh=True)
        # the list shows the zone in force (the error quotes what was sent): a second
        # press of the button must not choose whatever option happens to come first
        form.zone.data = choice.chosen or ""
        return _page(form, choice, 422)
    # every save is a row on the trail: a user may not write them by the thousand
    taken, wait = limits.take("settings")
    if not taken:
        return render_too_many("Too many saves", "The settings were saved several times in "
                               "the last minute. Wait a moment and try again.", wait,
                               back=(url_for("account.index"), "Back to Settings"))
    before, after = choose(form.zone.data or None, current_user.email, app_clock().now())
    flash(f"Time zone saved: {after}." if after != before else
          f"Time zone unchanged: {after}.", "success")
    return redirect(url_for("account.index"), 303)
