from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, SubmitField
from wtforms.validators import DataRequired, Length

from ..models import ROLES

ROLE_CHOICES = [SelectChoice(r, r.capitalize()) for r in ROLES]


class NewUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter an email."), Length(max=254)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = PasswordField("Password", validators=[DataRequired("Enter a password."),
                                                     Length(min=8, max=1000)],
                             render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Add user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class DeleteForm(FlaskForm):
    submit = SubmitField("Remove")
