from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from ..security import no_control_characters
from ..services.users import password_problem


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email."), Length(max=254),
                                           no_control_characters],
                       render_kw={"autocomplete": "email"})
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=1000)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Sign in")


def _password_rule(form, field):
    """The rule passwords are made by (``services.users.password_problem``), shown with
    the form's other errors before the current password is checked."""
    if problem := password_problem(field.data):
        raise ValidationError(problem)


class ChangePasswordForm(FlaskForm):
    """Changing one's own password (``services.users.change_own_password`` checks the
    current one and the rule again)."""
    current = PasswordField("Current password", validators=[
        DataRequired("Enter your current password."), Length(max=1000)],
        render_kw={"autocomplete": "current-password"})
    new = PasswordField("New password", validators=[_password_rule],
                        render_kw={"autocomplete": "new-password"})
    repeat = PasswordField("Repeat the new password", validators=[
        DataRequired("Enter the new password again."),
        EqualTo("new", "The two new passwords differ: type the same one twice.")],
        render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Change password")
