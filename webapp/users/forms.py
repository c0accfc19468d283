from flask import current_app
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectChoice, SelectField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from ..models import ROLES
from ..services.users import password_problem

ROLE_CHOICES = [SelectChoice(r, r.capitalize()) for r in ROLES]


def _password_rule(form, field):
    """The same rule as ``flask users create``: see ``service.password_problem``. Left
    blank with single sign-on set up, the user signs in only through it."""
    if not field.data and current_app.config["OIDC_ISSUER"]:
        return
    if problem := password_problem(field.data):
        raise ValidationError(problem)


class NewUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter an email."), Length(max=254)],
                       render_kw={"autocomplete": "off"})
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = PasswordField("Password", validators=[_password_rule],
                             render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Add user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class DeleteForm(FlaskForm):
    #: the email the admin saw on the confirmation page: a post for another user fails
    confirm = HiddenField()
    submit = SubmitField("Remove")


class SetPasswordForm(FlaskForm):
    """An admin sets someone else's password (their own is changed on the Password page)."""
    password = PasswordField("New password", validators=[_password_rule],
                             render_kw={"autocomplete": "new-password"})
    repeat = PasswordField("Repeat the new password", validators=[
        DataRequired("Enter the new password again."),
        EqualTo("password", "The two passwords differ: type the same one twice.")],
        render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Set password")
