import re
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (IntegerField, RadioField, SelectChoice, SelectField,
                     SelectMultipleField, StringField, SubmitField, TextAreaField,
                     ValidationError)
from wtforms.validators import NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ..services.amount import AmountError, parse_amount
from ..checks import has_control_characters

EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")
MAX_EXTRA = 20
#: the column the addresses are kept in, joined by commas
MAX_EXTRA_CHARACTERS = 2000
#: no team's budget is above this; a figure beyond it is a typo
MAX_BUDGET = Decimal(10_000_000)


class AlertRulesForm(FlaskForm):
    balance_below = StringField("Alert when the total balance falls below (USD)",
                                render_kw={"inputmode": "decimal", "autocomplete": "off"})
    runs_out_within_days = IntegerField("Alert when the forecast says the balance runs out "
                                        "within (days)",
                                        validators=[Optional(), NumberRange(1, 365, "Enter a "
                                                    "number of days from 1 to 365.")])
    email_roles = SelectMultipleField(
        "Email these roles", choices=[SelectChoice("finance", "Finance"),
                                      SelectChoice("admin", "Admins"),
                                      SelectChoice("viewer", "Viewers")],
        option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False))
    extra_emails = TextAreaField("Also email (one address a line)", render_kw={"rows": 3})
    submit = SubmitField("Save alert rules")

    #: parsed values, set by the validators
    balance = None
    addresses: list[str] = []

    def validate_balance_below(self, field):
        self.balance = None
        if (field.data or "").strip():
            try:
                self.balance = parse_amount(field.data, Decimal("0.01"), Decimal(1_000_000))
            except AmountError as exc:
                raise ValidationError(str(exc)) from None

    def validate_extra_emails(self, field):
        lines = [line.strip() for line in re.split(r"[\r\n,;]", field.data or "")
                 if line.strip()]
        bad = [line for line in lines if not EMAIL.fullmatch(line) or len(line) > 254
               or has_control_characters(line)]
        if bad:
            shown = "".join(c if c.isprintable() else "?" for c in bad[0][:60])
            raise ValidationError(f"“{shown}” is not an email address.")
        if len(lines) > MAX_EXTRA:
            raise ValidationError(f"At most {MAX_EXTRA} extra addresses.")
        if len(",".join(lines)) > MAX_EXTRA_CHARACTERS:
            raise ValidationError(f"These addresses come to more than {MAX_EXTRA_CHARACTERS:,} "
                                  "characters; use fewer or shorter ones (a mailing list).")
        self.addresses = lines


class SendTestForm(FlaskForm):
    submit = SubmitField("Send test alert")


class BudgetForm(FlaskForm):
    """The budget (empty: none), its window, and the spike alert's sensitivity."""

    amount = StringField("Budget (USD)", render_kw={"inputmode": "decimal",
                                                    "autocomplete": "off"})
    basis = RadioField("Per", choices=[SelectChoice("period", "Plan period"),
                                       SelectChoice("month", "Calendar month")],
                       default="period", validate_choice=False)
    spike_sensitivity = SelectField(
        "Spend-spike alerts", default="medium",
        choices=[SelectChoice("low", "Low: only hours far above usual"),
                 SelectChoice("medium", "Medium"),
                 SelectChoice("high", "High: hours somewhat above usual too")],
        validate_choice=False)
    submit = SubmitField("Save budget")

    #: the parsed amount (``None``: no budget), set by the validator
    decimal = None

    def validate_amount(self, field):
        self.decimal = None
        text = (field.data or "").strip()
        if not text:
            return
        try:
            self.decimal = parse_amount(text, Decimal(1), MAX_BUDGET)
        except AmountError as exc:  # its words are a top-up's
            raise ValidationError(str(exc).replace("top-up", "budget")) from None

    def validate_basis(self, field):
        if field.data not in ("period", "month"):
            raise ValidationError("Choose a plan period or a calendar month.")

    def validate_spike_sensitivity(self, field):
        if field.data not in ("low", "medium", "high"):
            raise ValidationError("Choose low, medium or high.")
