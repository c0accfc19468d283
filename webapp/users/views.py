from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import render_too_many
from ..extensions import db
from ..models import User
from ..services import limits, users as service
from ..security import permission_required
from .forms import DeleteForm, NewUserForm, RoleForm, SetPasswordForm

bp = Blueprint("users", __name__, url_prefix="/users")

#: a user's id in a URL: the column's range (a 32-bit integer), anything else a 404
ROW_ID = "int(min=1, max=2147483647)"


def _roles_from_sso(user: User) -> bool:
    """Whether the provider's groups set this user's role (at each of their sign-ins)."""
    return user.uses_sso and current_app.config["OIDC_ROLE_MAP"] is not None


def _page(form=None, status=200):
    users = service.list_users()
    role_forms = {u.id: RoleForm(formdata=None, role=u.role, prefix=f"u{u.id}") for u in users}
    return render_template("users/list.html", users=users, form=form or NewUserForm(),
                           role_forms=role_forms, roles_from_sso=_roles_from_sso,
                           sso=bool(current_app.config["OIDC_ISSUER"])), status


@bp.get("")
@permission_required("users")
def index():
    return _page()


@bp.post("")
@permission_required("users")
def create():
    form = NewUserForm()
    if form.validate():
        try:
            user = service.create_user(form.email.data, form.role.data,
                                       form.password.data or None)
        except service.UserError as exc:
            form.email.errors.append(str(exc))
        else:
            flash(f"Added {user.email} as {user.role}.", "success")
            return redirect(url_for("users.index"))
    return _page(form, status=422)


def _other_user(user_id) -> User | None:
    user = db.session.get(User, user_id)
    if user is None:
        flash("That user no longer exists.", "error")
    elif user.id == current_user.id:
        flash("You cannot change or remove your own account here; ask another admin.", "error")
        return None
    return user


@bp.post(f"/<{ROW_ID}:user_id>/role")
@permission_required("users")
def change_role(user_id):
    user = _other_user(user_id)
    form = RoleForm(prefix=f"u{user_id}")
    if user is not None and _roles_from_sso(user):
        flash(f"{user.email}'s role comes from their groups at the identity provider: "
              "change it there.", "error")
    elif user is not None and form.validate():
        before = user.role
        try:
            service.set_role(user.email, form.role.data)
        except service.UserError as exc:
            flash(str(exc), "error")
        else:
            if before != form.role.data:
                flash(f"{user.email} is now {form.role.data} (was {before}).", "success")
    elif user is not None:
        flash("Choose a valid role.", "error")
    return redirect(url_for("users.index"))


@bp.get(f"/<{ROW_ID}:user_id>/delete")
@permission_required("users")
def confirm_remove(user_id):
    """Removing someone is not undone by a click: say who, and what it does, first."""
    user = _other_user(user_id)
    if user is None:
        return redirect(url_for("users.index"))
    form = DeleteForm(formdata=None, confirm=user.email)
    return render_template("users/remove.html", user=user, form=form,
                           last_admin=user.role == "admin" and service.admin_count() <= 1)


@bp.post(f"/<{ROW_ID}:user_id>/delete")
@permission_required("users")
def remove(user_id):
    user = _other_user(user_id)
    form = DeleteForm()
    if user is None:
        return redirect(url_for("users.index"))
    if not form.validate() or form.confirm.data != user.email:
        # not confirmed on the question page (or for someone else): ask there
        flash(f"Confirm that you want to remove {user.email}.", "info")
        return redirect(url_for("users.confirm_remove", user_id=user.id), 303)
    email, through_sso = user.email, user.uses_sso  # the row is gone after the delete
    try:
        service.delete_user(email)
    except service.UserError as exc:
        flash(str(exc), "error")
    else:
        again = " They can sign in again through SSO (a first sign-in adds them): remove " \
            "them at the identity provider, or from its groups that give access." \
            if through_sso and current_app.config["OIDC_ALLOW_SIGNUP"] else ""
        flash(f"Removed {email}.{again}", "success")
    return redirect(url_for("users.index"))


def _password_page(user, form, status=200):
    """The page; for a demo account or a single sign-on user it says why there is no form
    (the command line can give such a user a password: ``flask users set-password``)."""
    return render_template("users/password.html", user=user, form=form,
                           sso_only=not user.has_password), status


@bp.route(f"/<{ROW_ID}:user_id>/password", methods=["GET", "POST"])
@permission_required("users")
def password(user_id):
    """Set a new password for someone else (who forgot theirs, or whose was seen); an
    admin's own is changed where everyone's is, which asks for the current one."""
    if user_id == current_user.id:
        flash("Change your own password on the Password page: it asks for your current one.",
              "info")
        return redirect(url_for("password.show"))
    user = _other_user(user_id)
    if user is None:
        return redirect(url_for("users.index"))
    if request.method == "GET":
        return _password_page(user, SetPasswordForm(formdata=None))
    form = SetPasswordForm()
    if user.is_demo or not user.has_password:
        return _password_page(user, form, 403)  # the page says why; it has no form
    taken, wait = limits.take("passwords")  # before the rule's costly checks
    if not taken:
        return render_too_many("Too many passwords set", "Passwords were set several times in "
                               "the last minute. Wait a moment and try again.", wait,
                               back=(url_for("users.index"), "Back to Users"))
    if not form.validate():
        return _password_page(user, form, 422)
    try:
        ended = service.set_password(user.email, form.password.data)
    except service.UserError as exc:
        form.password.errors.append(str(exc))
        return _password_page(user, form, 422)
    flash(f"New password set for {user.email}; {ended} session{'s' if ended != 1 else ''} "
          "of theirs ended.", "success")
    return redirect(url_for("users.index"), 303)
