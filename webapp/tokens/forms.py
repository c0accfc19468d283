from flask_wtf import FlaskForm
from wtforms import (BooleanField, SelectChoice, SelectField, SelectMultipleField, StringField,
                     SubmitField)
from wtforms.validators import InputRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from ..security import no_control_characters
from ..services.tokens import DEFAULT_LIFETIME, LIFETIMES, NAME_MAX, SCOPE_WORDS


class NewTokenForm(FlaskForm):
    name = StringField("Name", validators=[
        InputRequired("Give the token a name, like “month-end reconciliation”."),
        Length(max=NAME_MAX, message=f"Use at most {NAME_MAX} characters."),
        no_control_characters])
    scopes = SelectMultipleField(
        "What it may read", choices=[SelectChoice(s, f"{s}: {w}") for s, w in SCOPE_WORDS.items()],
        default=["balance:read", "usage:read"],
        widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    days = SelectField("Expires after", choices=[SelectChoice(str(d), f"{d} days") for d in LIFETIMES],
                       default=str(DEFAULT_LIFETIME))
    team = BooleanField("A team token (belongs to the account, not to you; admins only)")
    submit = SubmitField("Create token")


class RevokeForm(FlaskForm):
    """A revoke button: the CSRF token (checked for every post) and nothing else."""
