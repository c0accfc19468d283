import re

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField, ValidationError
from wtforms.validators import DataRequired

from ..services.amount import AmountError, parse_amount

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _valid_nonce(form, field):
    if not _NONCE.fullmatch(field.data or ""):
        raise ValidationError("This form is missing its one-time token. Reload the page.")


class ActionForm(FlaskForm):
    """A billing action: CSRF token plus a one-time token, so a replay starts nothing new."""

    nonce = HiddenField(validators=[DataRequired("This form is missing its one-time token. "
                                                 "Reload the page."), _valid_nonce])


class TopUpForm(ActionForm):
    amount = StringField("Amount (USD)", render_kw={"inputmode": "decimal",
                                                     "autocomplete": "off"})
    submit = SubmitField("Continue to checkout")

    #: the parsed amount, set by validate_amount
    decimal = None

    def validate_amount(self, field):
        cfg = current_app.config
        try:
            self.decimal = parse_amount(field.data, cfg["RECHARGE_MIN"], cfg["RECHARGE_MAX"])
        except AmountError as exc:
            raise ValidationError(str(exc)) from None


class ChangePlanForm(ActionForm):
    submit = SubmitField("Continue to checkout")
