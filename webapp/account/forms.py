from datetime import datetime
from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import SelectChoice, SelectField, SubmitField, ValidationError
from wtforms.widgets import Select

from ..formatting import offset, zone_label
from ..services.zone import offered_offsets
from ..settings import zone_problem


def zone_choices(setting: ZoneInfo, now: datetime) -> list[SelectChoice]:
    """The select's options: the server's setting first, then UTC, then every
    ``Area/Place`` zone grouped by area, each with its offset from UTC now (typing a
    place's first letters finds it: ``Los Angeles (UTC−08:00)``)."""
    choices = [SelectChoice("", f"The server's setting, DISPLAY_TIMEZONE: "
                                f"{zone_label(setting, now)}"),
               SelectChoice("UTC", "UTC")]
    for name, delta in offered_offsets(now)[1:]:
        area, place = name.split("/", 1)
        choices.append(SelectChoice(name, f"{place.replace('_', ' ')} ({offset(delta)})",
                                    optgroup=area))
    return choices


class PlainOptions(Select):
    """WTForms' select with each option written out directly: its general attribute
    builder costs about 70 µs an option, a third of a second's tenth for 490 zones."""

    @classmethod
    def render_option(cls, choice, **kwargs):
        selected = " selected" if choice.selected else ""
        return Markup(f'<option{selected} value="{escape(choice.value)}">'
                      f"{escape(choice.label)}</option>")


class ZoneForm(FlaskForm):
    # any zone name the setting would take is taken (``US/Pacific`` too): the list
    # only offers the usual spelling of each
    zone = SelectField("Time zone", validate_choice=False, widget=PlainOptions())
    submit = SubmitField("Save time zone")

    def validate_zone(self, field):
        name = (field.data or "").strip()
        if name and zone_problem(name):
            shown = "".join(c if c.isprintable() else "?" for c in name[:60])
            raise ValidationError(f"“{shown}” is not a time zone; choose one from the list.")
        field.data = name
