from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length

from ..security import no_control_characters


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email."), Length(max=254),
                                           no_control_characters],
                       render_kw={"autocomplete": "email"})
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=1000)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Sign in")
