"""The audit trail's filters: a GET form, so no CSRF token, and every value checked."""
from datetime import date

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SearchField, SelectChoice, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from ..checks import has_control_characters
from ..formatting import heading
from ..services.trail import ACTIONS

#: dates the trail can hold; anything else is a typo (and 9999-12-31 + 1 day overflows)
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)


class DayField(DateField):
    """A ``YYYY-MM-DD`` date whose error says what was typed and what is wanted."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(f"“{valuelist[0][:20]}” is not a date; use YYYY-MM-DD.") from None

    def _value(self):
        # a date input may only hold a date: what was typed is quoted in the error instead
        return self.data.isoformat() if self.data else ""


def _sane(form, field):
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError(f"Choose a date from {EARLIEST} to {LATEST}.")


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    start = DayField("From (date)", validators=[Optional(), _sane], name="from")
    end = DayField("To (date)", validators=[Optional(), _sane], name="to")
    action = SelectField("Action", choices=[SelectChoice("", "All actions")] +
                         [SelectChoice(a, heading(a)) for a in ACTIONS],
                         validators=[Optional()])
    user = SearchField("User (email)", validators=[Optional()],
                       filters=[lambda v: (v or "").strip().lower()[:254]],
                       render_kw={"autocomplete": "off"})
    page = IntegerField("Page", validators=[Optional(), NumberRange(min=1, max=10**6)])

    def validate_user(self, field):
        if field.data and has_control_characters(field.data):
            raise ValidationError("An email address has no control characters.")

    def validate_end(self, field):
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError("The end date is before the start date.")
