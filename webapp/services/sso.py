"""Who an identity provider's answer lets in, and with which role.

The page (``auth.sso``) gets the provider's verified claims; this decides:
the user is found by issuer and subject, never by email alone; an existing
user is linked by email only when the provider says the email is verified
(and, for a user with a password of ours, only with ``OIDC_LINK_BY_EMAIL``);
with ``OIDC_ROLE_MAP`` the role is worked out again at every sign-in, a
demotion included, and each change is on the audit trail with the groups
seen. Each refusal is a ``SignInRefused`` that says why in a short phrase
(for the trail) and in a sentence (for the person).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from . import tokens, trail
from .users import UserError, change_keeping_an_admin, check_role, normalise_email
from ..extensions import db
from ..models import VIA_PASSWORD, User, UserSession
from ..settings import ROLE_ORDER

#: who the trail says made a change the provider's groups made
SSO_ACTOR = ("(identity provider)", "sso")
#: the most groups a trail row lists (a user may be in hundreds)
GROUPS_SHOWN = 20
ASK_AN_ADMIN = "Ask a dashboard admin for access."


class SignInRefused(Exception):
    """This identity may not sign in. ``reason``: a short fixed phrase for the trail;
    ``message``: a sentence for the person; ``email``: who it was, when known;
    ``detail``: what the trail should add (the groups seen)."""

    def __init__(self, reason: str, message: str, *, email: str | None = None,
                 detail: str | None = None, shuts_out: bool = False):
        super().__init__(message)
        self.reason, self.message, self.email, self.detail = reason, message, email, detail
        #: the provider no longer lets this person in: a user already linked to them
        #: loses their sessions and tokens here too
        self.shuts_out = shuts_out


@dataclass(frozen=True)
class Identity:
    """What the provider said of the person, its ID token checked."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """The ``OIDC_*`` settings that decide who gets in."""

    role_map: tuple[tuple[str, str], ...] | None
    allow_signup: bool
    allowed_domains: tuple[str, ...]
    link_by_email: bool
    #: ``PASSWORD_SIGNIN=admins``: a local admin's account is the break-glass way in,
    #: never linked (linking removes its password)
    keep_local_admins: bool = False

    @classmethod
    def from_config(cls, cfg) -> "Policy":
        return cls(cfg["OIDC_ROLE_MAP"], cfg["OIDC_ALLOW_SIGNUP"], cfg["OIDC_ALLOWED_DOMAINS"],
                   cfg["OIDC_LINK_BY_EMAIL"], cfg["PASSWORD_SIGNIN"] == "admins")


def groups_from(claims: dict, claim: str) -> tuple[str, ...]:
    """The groups in ``claims[claim]`` (failing that, a dotted path such as
    ``realm_access.roles`` reaches into nested claims): a list of names, or one name;
    anything else is none."""
    value = claims.get(claim)  # a namespaced claim (https://example.com/groups) as it is
    if value is None:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(dict.fromkeys(g for g in value if isinstance(g, str) and g))


def is_verified(claims: dict) -> bool:
    """Whether the provider vouches for the email (some send the string "true")."""
    verified = claims.get("email_verified")
    return verified is True or (isinstance(verified, str) and verified.lower() == "true")


def role_for(groups, role_map) -> str | None:
    """The highest role ``groups`` map to (``*`` maps everyone), or None."""
    found = [role for group, role in role_map if group == "*" or group in groups]
    return max(found, key=ROLE_ORDER.index, default=None)


def _groups_note(groups) -> str:
    shown = ", ".join(groups[:GROUPS_SHOWN]) or "none"
    more = f" and {len(groups) - GROUPS_SHOWN} more" if len(groups) > GROUPS_SHOWN else ""
    return f"groups: {shown}{more}"


def admit(identity: Identity, policy: Policy, now: datetime) -> User:
    """The user ``identity`` signs in as, created, linked or given a new role as the
    policy says (each change committed with its audit row). Raises ``SignInRefused``;
    ``TrailUnavailable`` when the change could not be recorded."""
    try:
        return _admit(identity, policy, now)
    except IntegrityError:
        # the same person's first sign-in in two tabs at once: the other made the row
        db.session.rollback()
        return _admit(identity, policy, now)


def _admit(identity: Identity, policy: Policy, now: datetime) -> User:
    email = _email(identity)
    note = _groups_note(identity.groups)
    user = db.session.scalar(select(User).where(User.oidc_issuer == identity.issuer,
                                                User.oidc_subject == identity.subject))
    try:
        _check_domain(identity, email, policy, note)
        role = _role(identity, email, policy, note)
        if user is None:
            return _link_or_create(identity, email, role, policy, note)
        if role is not None and role != user.role:
            _follow_groups(user, role, note)
    except SignInRefused as refusal:
        if user is not None and refusal.shuts_out:
            _shut_out(user, refusal, now)
        raise
    return user


def _role(identity, email, policy, note) -> str | None:
    """The role the groups map to (None without a role map). Raises ``SignInRefused``
    when they map to none."""
    if policy.role_map is None:
        return None
    role = role_for(identity.groups, policy.role_map)
    if role is None:
        raise SignInRefused("in no mapped group",
                            "Your company account is in none of the groups that give access "
                            f"to this dashboard. {ASK_AN_ADMIN}", email=email, detail=note,
                            shuts_out=True)
    return role


def _shut_out(user: User, refusal: SignInRefused, now: datetime):
    """The provider no longer lets ``user`` in (no mapped group, a domain no longer
    allowed, groups that no longer make the last admin one): their sessions, personal
    API tokens and any password (a break-glass one from ``flask users set-password``)
    end too, rather than live on with the old role."""
    ended = db.session.execute(delete(UserSession).where(UserSession.user_id == user.id)
                               ).rowcount
    revoked = tokens.revoke_personal(user.id, actor=SSO_ACTOR, now=now)
    had_password = db.session.execute(
        update(User).where(User.id == user.id, User.password_hash.is_not(None))
        .values(password_hash=None).execution_options(synchronize_session=False)).rowcount
    trail.commit()
    gone = [f"{n} {what}" for n, what in ((ended, "open session(s) ended"),
                                          (revoked, "personal API token(s) revoked"),
                                          (had_password, "password removed")) if n]
    if gone:
        refusal.detail = f"{refusal.detail}; {', '.join(gone)}"


def _email(identity: Identity) -> str | None:
    """The identity's email in our stored form, or None when it has none we can use."""
    if not identity.email:
        return None
    try:
        return normalise_email(identity.email)
    except UserError:
        return None


def _check_domain(identity, email, policy, note):
    if not policy.allowed_domains:
        return
    allowed = ", ".join("@" + d for d in policy.allowed_domains)
    if (email.rpartition("@")[2] if email else None) not in policy.allowed_domains:
        raise SignInRefused("email domain not allowed",
                            f"This dashboard is for {allowed} accounts, and your company "
                            f"account is not one. {ASK_AN_ADMIN}", email=email, detail=note,
                            shuts_out=True)
    if not identity.email_verified:  # an unverified address proves no domain
        raise SignInRefused("email not verified",
                            f"This dashboard is for {allowed} accounts, and your identity "
                            f"provider has not verified {email}. {ASK_AN_ADMIN}",
                            email=email, detail=note)


def _link_or_create(identity, email, role, policy, note) -> User:
    """A first sign-in: link the user an admin added (or, when allowed, a password
    user) by a verified email, or create one. Raises ``SignInRefused``; the same one
    for every unverified email, whoever has it here (no one learns who has an account).
    Raises ``IntegrityError`` when another first sign-in made the row a moment ago."""
    if email is None:
        raise SignInRefused("no email from the provider",
                            "Your identity provider did not say your email address, which "
                            f"this dashboard needs to know who you are. {ASK_AN_ADMIN}",
                            detail=note)
    if not identity.email_verified:
        raise SignInRefused("email not verified",
                            f"Your identity provider has not verified {email}, so this "
                            f"dashboard cannot tell it is yours. {ASK_AN_ADMIN}",
                            email=email, detail=note)
    existing = db.session.scalar(select(User).where(User.email == email))
    if existing is not None:
        return _link(existing, identity, role, policy, note)
    if not policy.allow_signup:
        raise SignInRefused("not added by an admin",
                            f"{email} has no access to this dashboard yet. {ASK_AN_ADMIN}",
                            email=email, detail=note)
    user = User(email=email, role=check_role(role or "viewer"), password_hash=None,
                oidc_issuer=identity.issuer, oidc_subject=identity.subject)
    db.session.add(user)
    db.session.flush()  # IntegrityError here, not as the trail's busy page
    trail.stage(trail.USER_ADDED, "done", actor=SSO_ACTOR, subject=email, role_to=user.role,
                detail=f"First sign-in through SSO; {note}.")
    trail.commit()
    return user


def _link(user: User, identity, role, policy, note) -> User:
    """Link ``user`` to ``identity`` (a verified email matched), or raise
    ``SignInRefused`` saying why not. A user who had a password loses it: from now on
    the provider decides whether they get in."""
    if user.uses_sso:
        if (user.oidc_issuer, user.oidc_subject) == (identity.issuer, identity.subject):
            return user  # this person's other tab made the row a moment ago
        raise _taken(user, note)
    if user.has_password and user.role == "admin" and policy.keep_local_admins:
        raise SignInRefused("local admin kept for break-glass",
                            f"{user.email} is a local admin here, kept to sign in with a "
                            "password when single sign-on cannot: sign in with that password. "
                            "To use your company account, ask another admin to add it under "
                            "an address of its own.", email=user.email, detail=note)
    if user.has_password and not policy.link_by_email:
        raise SignInRefused("password user, linking off",
                            f"{user.email} signs in here with a password. To use your company "
                            f"account instead, ask a dashboard admin to switch linking on "
                            "(OIDC_LINK_BY_EMAIL).", email=user.email, detail=note)
    had_password = user.has_password
    claimed = db.session.execute(
        update(User).where(User.id == user.id, User.oidc_subject.is_(None))
        .values(oidc_issuer=identity.issuer, oidc_subject=identity.subject,
                password_hash=None)
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:  # another first sign-in took it a moment ago: this one, or another
        db.session.rollback()
        db.session.refresh(user)
        if (user.oidc_issuer, user.oidc_subject) != (identity.issuer, identity.subject):
            raise _taken(user, note)
    else:
        removed = ""
        if had_password:  # the sessions the password opened end with it
            gone = db.session.execute(delete(UserSession).where(
                UserSession.user_id == user.id, UserSession.via == VIA_PASSWORD)).rowcount
            removed = f"; its password removed, {gone} password session(s) ended"
        trail.stage(trail.SSO_LINKED, "done", actor=SSO_ACTOR, subject=user.email,
                    detail=f"Linked by verified email{removed}; {note}.")
        trail.commit()
        db.session.refresh(user)
    if role is not None and role != user.role:
        _follow_groups(user, role, note)
    return user


def _taken(user: User, note: str) -> SignInRefused:
    return SignInRefused("email belongs to another SSO identity",
                         f"{user.email} is already linked to a different company account. "
                         f"{ASK_AN_ADMIN}", email=user.email, detail=note)


def _follow_groups(user: User, role: str, note: str):
    """Give ``user`` the role their groups map to now, on the trail with the groups
    seen. Raises ``SignInRefused`` when that would leave the dashboard without an
    admin (the person keeps no rights they lost, and the dashboard keeps its admin)."""
    before = user.role
    try:
        change_keeping_an_admin(user, update(User).where(User.id == user.id).values(role=role)
                                .execution_options(synchronize_session=False), "demoted")
    except UserError:
        raise SignInRefused(
            "last admin would be demoted",
            "Your groups no longer make you an admin, but you are this dashboard's last "
            "admin: another admin must be made first (flask users set-role).",
            email=user.email, detail=note, shuts_out=True) from None
    trail.stage(trail.ROLE_CHANGED, "done", actor=SSO_ACTOR, subject=user.email,
                role_from=before, role_to=role, detail=f"Set by SSO groups at sign-in; {note}.")
    trail.commit()
    db.session.refresh(user)
