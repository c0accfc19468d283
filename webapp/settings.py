"""Settings from the environment, checked once at start-up.

``load_settings`` returns a plain dict for ``app.config``; anything wrong
raises ``ConfigError`` with a message that names the variable and says
what it should be, so a bad deployment stops at start, not at the first
customer.
"""
from __future__ import annotations

import os
import secrets
import sys
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INSTANCE = Path(__file__).resolve().parent.parent / "instance"

MIN_SECRET_LENGTH = 32
#: the fewest days of readings kept (the longest chart is 365 days)
MIN_HISTORY_DAYS = 400
#: held while zxcvbn is loaded, used or let go of (``_guesses_log10``, ``users``)
ZXCVBN_LOCK = threading.Lock()
#: zxcvbn's estimate (log10 of guesses) a SECRET_KEY must reach: 64 hex digits
#: from ``secrets.token_hex(32)`` score about 60, a repeated word or a keyboard
#: walk under 10, whatever its length
MIN_SECRET_GUESSES_LOG10 = 30
MAKE_A_SECRET = "python -c 'import secrets; print(secrets.token_hex(32))'"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


DEFAULTS = {
    "GIGA_API_URL": "https://api.withgiga.ai",
    "GIGA_API_KEY": None,
    "GIGA_SANDBOX": "0",
    "SECRET_KEY": None,
    "API_TOKEN_PEPPER": None,
    "SALES_URL": "https://withgiga.ai/contact",
    "CHECKOUT_ALLOWED_HOSTS": "checkout.stripe.com",
    "RECHARGE_MIN": "5",
    "RECHARGE_MAX": "10000",
    "BILLING_CACHE_TTL": "30",
    "PLANS_CACHE_TTL": "3600",
    "STALE_MAX_AGE": "600",
    "UPSTREAM_BUDGET_PER_MINUTE": "30",
    "UPSTREAM_RESERVED_FOR_ACTIONS": "5",
    "UPSTREAM_CONNECT_TIMEOUT": "3",
    "UPSTREAM_DEADLINE": "8",
    "UPSTREAM_GET_RETRIES": "2",
    "BREAKER_THRESHOLD": "5",
    "BREAKER_COOLDOWN": "30",
    "ACTIONS_PER_MINUTE": "5",
    "TYPOS_PER_MINUTE": "20",
    "API_REQUESTS_PER_MINUTE": "60",
    "API_REQUESTS_PER_HOUR": "1000",
    "API_FAILURES_PER_MINUTE": "20",
    "DATABASE_URL": None,
    "DATABASE_WAIT_SECONDS": "3",
    "DATABASE_START_WAIT_SECONDS": "30",
    "REDIS_URL": None,
    "HISTORY_DAYS": "400",
    "SMTP_URL": None,
    "ALERT_EMAIL_FROM": "billing-alerts@localhost",
    "ALERT_WEBHOOK_URL": None,
    "ALERT_WEBHOOK_SECRET": None,
    "ALERT_BALANCE_BELOW": None,
    "ALERT_RUNS_OUT_DAYS": None,
    #: the least an hour must be worth for a spend-spike alert (dollars)
    "SPIKE_MIN_AMOUNT": "2",
    "ALERT_RETRY_SECONDS": "30",
    "ALERT_SEND_EVERY": "5",
    "ALERT_CLAIM_SECONDS": "90",
    "ALERT_POLL_WAIT": "20",
    "PUBLIC_URL": None,
    "METRICS_TOKEN": None,
    "SANDBOX_SPEND_PER_HOUR": "0.30",
    "SESSION_IDLE_MINUTES": "30",
    "SESSION_MAX_HOURS": "12",
    "SESSION_MAX_PER_USER": "10",
    "LOGIN_MAX_FAILURES": "5",
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "20",
    "LOGIN_FAILURE_WINDOW_MINUTES": "15",
    "TRUST_PROXY": "0",
    "SANDBOX_PORT": "0",
    "SANDBOX_STATE_PATH": None,
    "SANDBOX_DATABASE_URL": None,
    "DISPLAY_TIMEZONE": "UTC",
    "OIDC_ISSUER": None,
    "OIDC_CLIENT_ID": None,
    "OIDC_CLIENT_SECRET": None,
    "OIDC_SCOPES": "openid email profile",
    "OIDC_GROUPS_CLAIM": "groups",
    "OIDC_ROLE_MAP": None,
    "OIDC_ALLOW_SIGNUP": "1",
    "OIDC_ALLOWED_DOMAINS": None,
    "OIDC_BUTTON_LABEL": "Sign in with SSO",
    "OIDC_LINK_BY_EMAIL": "0",
    "PASSWORD_SIGNIN": "on",
}


def _int(name, raw, minimum=0):
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _decimal(name, raw, example: str) -> Decimal:
    """``raw`` as a finite Decimal. Raises ``ConfigError`` naming ``name``."""
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be an amount {example}, got {raw!r}.") from None
    if not value.is_finite():
        raise ConfigError(f"{name} must be an amount {example}, got {raw!r}.")
    return value


def _money(name, raw) -> Decimal:
    """A positive amount in USD with at most two decimals (limits, thresholds)."""
    value = _decimal(name, raw, "in USD like 5 or 12.50")
    if value <= 0 or value.as_tuple().exponent < -2:
        raise ConfigError(f"{name} must be a positive amount with at most two decimals, "
                          f"got {raw!r}.")
    return value


def _amount(name, raw) -> Decimal:
    """A non-negative amount (zero allowed), for rates."""
    value = _decimal(name, raw, "like 0.30")
    if value < 0 or value > 1000:
        raise ConfigError(f"{name} must be an amount from 0 to 1000, got {raw!r}.")
    return value


def _flag(name, raw) -> bool:
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}.")


def _secret_key_problem(secret: str) -> str | None:
    """Why ``secret`` is no good as a SECRET_KEY (or METRICS_TOKEN), or None.

    Length alone lets ``aaaa…`` or ``changeme`` × 8 through; zxcvbn spots
    repeats, sequences, keyboard walks and dictionary words at any length.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it is {len(secret)} characters; use at least {MIN_SECRET_LENGTH}"
    if _guesses_log10(secret) < MIN_SECRET_GUESSES_LOG10:
        return ("it is not random (a repeated pattern, a sequence or words, "
                "or too few different characters)")
    return None


def _guesses_log10(secret: str) -> float:
    """zxcvbn's estimate of the guesses ``secret`` takes (log10). zxcvbn is let go of
    again when this loaded it: its word lists are 10 MB that every web process would
    keep for a check made once, at start (a password chosen later loads it anew)."""
    with ZXCVBN_LOCK:  # no other thread is importing it while it is let go of
        loaded = "zxcvbn" in sys.modules
        from zxcvbn import zxcvbn

        try:
            return zxcvbn(secret[:100], max_length=100)["guesses_log10"]
        finally:
            if not loaded:
                for name in [n for n in list(sys.modules) if n.partition(".")[0] == "zxcvbn"]:
                    del sys.modules[name]


def _hosts(raw) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in str(raw).split(",") if h.strip())
    for host in hosts:
        if not host.replace("-", "").replace(".", "").isalnum() or not host.isascii():
            raise ConfigError("CHECKOUT_ALLOWED_HOSTS must be a comma-separated list of host "
                              f"names like checkout.stripe.com, got {host!r}.")
    return hosts


def _instance_path(raw) -> Path:
    """``INSTANCE_PATH``: where this deployment keeps its files (the outbox of
    unsettled checkouts, the hashed static files, and by default the SQLite database
    and the sandbox's state, database and key). A folder this process may write to,
    or may make. Raises ``ConfigError``."""
    path = Path(str(raw).strip()).expanduser().absolute() if raw and str(raw).strip() \
        else INSTANCE
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))
    if existing == path and not path.is_dir():
        raise ConfigError(f"INSTANCE_PATH must be a folder, but {path} is a file.")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"INSTANCE_PATH {path} cannot be used: {existing} is not a folder "
                          "this process may write to.")
    return path


def _database_url(raw, instance: Path) -> str:
    if not raw:
        return f"sqlite:///{instance / 'dashboard.db'}"
    # Heroku-style URLs name no driver; SQLAlchemy wants psycopg named
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _redis_url(raw) -> str | None:
    """``REDIS_URL`` checked for shape (not reachability: Redis may start later)."""
    if raw is None or not str(raw).strip():
        return None
    url = str(raw).strip()
    message = ("REDIS_URL must look like redis://host:6379/0 (rediss:// for TLS, "
               "unix:///path/to/redis.sock for a socket)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ConfigError(f"{message}, got a value that does not parse.") from None
    if parts.scheme not in ("redis", "rediss", "unix") or \
            (parts.scheme != "unix" and not parts.hostname) or \
            (parts.scheme == "unix" and not parts.path):
        raise ConfigError(f"{message}; got one starting {parts.scheme or '(no scheme)'}://.")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise ConfigError(f"{message}: the database after the slash must be a number.")
    return url


#: names the time zone database holds that are no place's time: the host's own zone
#: (whatever the server happens to be set to) and the database's placeholder
NOT_A_PLACE = ("localtime", "Factory", "posixrules")
#: the longest zone name kept (the ``account_settings`` column); IANA's longest is 32
ZONE_NAME_MAX = 64


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone this dashboard can show days in, or ``None``
    when it is (``America/Los_Angeles``, ``Asia/Kathmandu``, ``UTC``: exact spelling)."""
    if not name or len(name) > ZONE_NAME_MAX or not name.isascii() or not name.isprintable() \
            or name in NOT_A_PLACE:
        return "it is not a time zone name"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a path (``../x``, ``/etc/x``); OSError: a name the file system refuses
        return "no time zone has that name (names are spelled like America/Los_Angeles)"
    return None


def _display_timezone(raw) -> str:
    """``DISPLAY_TIMEZONE``: the IANA zone days and times are shown in until the settings
    page chooses another; set but empty counts as unset (UTC). Raises ``ConfigError``."""
    name = str(raw).strip() or "UTC"
    if problem := zone_problem(name):
        raise ConfigError(f"DISPLAY_TIMEZONE must be an IANA time zone name like "
                          f"America/Los_Angeles, Europe/Berlin or UTC, got {name[:80]!r}: "
                          f"{problem}.")
    return name


#: where plain http (a webhook) or plain SMTP may go: this machine only
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` may not receive alerts, or ``None`` when it may (https; http on loopback)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a bad port raises)
    except ValueError:
        return "it does not parse as a URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None
    return "it must use https (plain http only to this machine's loopback address)"


def smtp_url_problem(url: str) -> str | None:
    """Why ``url`` cannot send mail, or ``None`` (smtp:// with STARTTLS, smtps://, or
    plain smtp:// on loopback only)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return "it does not parse as a URL"
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        return "it must look like smtp://user:pass@host:587 or smtps://user:pass@host:465"
    return None


def _alert_settings(cfg, raw):
    """The alert channels and the rules seeded from the environment."""
    for name in ("SMTP_URL", "ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_SECRET", "PUBLIC_URL",
                 "METRICS_TOKEN"):
        cfg[name] = (str(raw[name]).strip() or None) if raw[name] is not None else None
    if cfg["SMTP_URL"] and (problem := smtp_url_problem(cfg["SMTP_URL"])):
        raise ConfigError(f"SMTP_URL is not usable: {problem}.")
    if cfg["ALERT_WEBHOOK_URL"] and (problem := webhook_url_problem(cfg["ALERT_WEBHOOK_URL"])):
        raise ConfigError(f"ALERT_WEBHOOK_URL is not usable: {problem}.")
    if cfg["METRICS_TOKEN"] and (problem := _secret_key_problem(cfg["METRICS_TOKEN"])):
        # whoever has it reads the balances and the deployment's health
        raise ConfigError(f"METRICS_TOKEN is too weak: {problem}. Generate one with: "
                          f"{MAKE_A_SECRET}")
    if cfg["PUBLIC_URL"] and urlsplit(cfg["PUBLIC_URL"]).scheme not in ("http", "https"):
        raise ConfigError("PUBLIC_URL must be the dashboard's address, like "
                          "https://billing.example.com.")
    cfg["ALERT_EMAIL_FROM"] = str(raw["ALERT_EMAIL_FROM"]).strip()
    cfg["ALERT_BALANCE_BELOW"] = (_money("ALERT_BALANCE_BELOW", raw["ALERT_BALANCE_BELOW"])
                                  if raw["ALERT_BALANCE_BELOW"] else None)
    cfg["ALERT_RUNS_OUT_DAYS"] = (_int("ALERT_RUNS_OUT_DAYS", raw["ALERT_RUNS_OUT_DAYS"], 1)
                                  if raw["ALERT_RUNS_OUT_DAYS"] else None)
    cfg["ALERT_RETRY_SECONDS"] = _int("ALERT_RETRY_SECONDS", raw["ALERT_RETRY_SECONDS"], 1)
    cfg["ALERT_SEND_EVERY"] = _int("ALERT_SEND_EVERY", raw["ALERT_SEND_EVERY"], 1)
    # a delivery is taken over by another process once its claim runs out: each
    # attempt is given a quarter of it, so a live sender is never overtaken
    cfg["ALERT_CLAIM_SECONDS"] = _int("ALERT_CLAIM_SECONDS", raw["ALERT_CLAIM_SECONDS"], 4)
    cfg["ALERT_POLL_WAIT"] = _int("ALERT_POLL_WAIT", raw["ALERT_POLL_WAIT"], 0)


#: ``PASSWORD_SIGNIN``: everyone, local admins only (break-glass), nobody
PASSWORD_SIGNIN_MODES = ("on", "admins", "off")
#: issuers anyone in the world has an account at (Google; Entra ID's multi-tenant ones)
OPEN_ISSUERS = ("https://accounts.google.com", "https://login.microsoftonline.com/common/v2.0",
                "https://login.microsoftonline.com/organizations/v2.0",
                "https://login.microsoftonline.com/consumers/v2.0")
#: the roles, lowest first: the highest a user's groups map to wins
ROLE_ORDER = ("viewer", "finance", "admin")


def _text(raw) -> str | None:
    return (str(raw).strip() or None) if raw is not None else None


def _sso_settings(cfg, raw):
    """Sign-in through the company's identity provider (OpenID Connect), and whether
    passwords still work. Raises ``ConfigError``."""
    for name in ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_BUTTON_LABEL",
                 "OIDC_GROUPS_CLAIM"):
        cfg[name] = _text(raw[name])
    issuer = cfg["OIDC_ISSUER"]
    if issuer:
        parts = urlsplit(issuer)
        if not parts.hostname or parts.scheme != "https" and not (
                parts.scheme == "http" and parts.hostname in LOOPBACK):
            raise ConfigError("OIDC_ISSUER must be the identity provider's https address, like "
                              f"https://login.example.com/realms/acme, got {issuer[:120]!r}.")
        for name in ("OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"):
            if not cfg[name]:
                raise ConfigError(f"{name} is required with OIDC_ISSUER: register the dashboard "
                                  "as a client at the identity provider and set both.")
    else:
        cfg["OIDC_ISSUER"] = None
    scopes = str(raw["OIDC_SCOPES"] or "").replace(",", " ").split()
    if "openid" not in scopes:
        raise ConfigError("OIDC_SCOPES must include openid, like \"openid email profile\", "
                          f"got {raw['OIDC_SCOPES']!r}.")
    cfg["OIDC_SCOPES"] = " ".join(dict.fromkeys(scopes))
    cfg["OIDC_GROUPS_CLAIM"] = cfg["OIDC_GROUPS_CLAIM"] or "groups"
    cfg["OIDC_BUTTON_LABEL"] = (cfg["OIDC_BUTTON_LABEL"] or "Sign in with SSO")[:80]
    cfg["OIDC_ROLE_MAP"] = _role_map(raw["OIDC_ROLE_MAP"])
    cfg["OIDC_ALLOW_SIGNUP"] = _flag("OIDC_ALLOW_SIGNUP", raw["OIDC_ALLOW_SIGNUP"])
    cfg["OIDC_LINK_BY_EMAIL"] = _flag("OIDC_LINK_BY_EMAIL", raw["OIDC_LINK_BY_EMAIL"])
    domains = tuple(d.strip().lower().lstrip("@") for d in
                    str(raw["OIDC_ALLOWED_DOMAINS"] or "").split(",") if d.strip())
    for domain in domains:
        if "." not in domain or not domain.replace("-", "").replace(".", "").isalnum():
            raise ConfigError("OIDC_ALLOWED_DOMAINS must be email domains separated by commas, "
                              f"like example.com,example.org, got {domain[:80]!r}.")
    cfg["OIDC_ALLOWED_DOMAINS"] = domains
    mode = str(raw["PASSWORD_SIGNIN"] or "").strip().lower()
    if mode not in PASSWORD_SIGNIN_MODES:
        raise ConfigError("PASSWORD_SIGNIN must be on, admins (local admins only) or off, "
                          f"got {raw['PASSWORD_SIGNIN']!r}.")
    if mode != "on" and not cfg["OIDC_ISSUER"]:
        raise ConfigError(f"PASSWORD_SIGNIN={mode} needs OIDC_ISSUER: without single sign-on "
                          "nobody could sign in.")
    cfg["PASSWORD_SIGNIN"] = mode
    if issuer and cfg["OIDC_ALLOW_SIGNUP"] and not domains and \
            issuer.rstrip("/").lower() in OPEN_ISSUERS:
        raise ConfigError(f"OIDC_ISSUER {issuer} signs in anyone with an account there: set "
                          "OIDC_ALLOWED_DOMAINS to the company's email domains, or "
                          "OIDC_ALLOW_SIGNUP=0 so only users an admin added get in.")


def _role_map(raw) -> tuple[tuple[str, str], ...] | None:
    """``OIDC_ROLE_MAP`` (``billing-admins=admin,billing-finance=finance,*=viewer``) as
    ``(group, role)`` pairs, or None when unset (roles are then set on the Users page).
    Raises ``ConfigError``."""
    text = _text(raw)
    if text is None:
        return None
    pairs = []
    for item in (i.strip() for i in text.split(",")):
        group, sep, role = (part.strip() for part in item.rpartition("="))
        if not item or not sep or not group or role not in ROLE_ORDER:
            raise ConfigError("OIDC_ROLE_MAP must be group=role pairs separated by commas, "
                              "roles viewer, finance or admin, * for everyone else, like "
                              f"billing-admins=admin,*=viewer; {item[:80]!r} is not one.")
        pairs.append((group, role))
    return tuple(pairs)


def load_settings(environ=None, overrides=None) -> dict:
    """Build the app's config from ``environ`` (default ``os.environ``) and ``overrides``.

    Raises ``ConfigError`` naming the first bad setting.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    raw = {k: overrides.get(k, environ.get(k, v)) for k, v in DEFAULTS.items()}
    testing = bool(overrides.get("TESTING", False))
    instance = _instance_path(overrides.get("INSTANCE_PATH", environ.get("INSTANCE_PATH")))
    cfg = dict(overrides)
    cfg["TESTING"] = testing
    _upstream_settings(cfg, raw, testing)
    cfg["SECRET_KEY"] = _secret_key(cfg, raw["SECRET_KEY"], instance, testing)
    cfg["API_TOKEN_PEPPER"] = _secret_key(cfg, raw["API_TOKEN_PEPPER"], instance, testing,
                                          name="API_TOKEN_PEPPER", uses="keys the API tokens")
    _numbers(cfg, raw)
    cfg["REDIS_URL"] = _redis_url(raw["REDIS_URL"])
    _alert_settings(cfg, raw)
    # sandbox mode keeps its demo users (and any user made while signed in as
    # one) in a database of its own, never in the real one
    cfg["SQLALCHEMY_DATABASE_URI"] = (
        _database_url(raw["SANDBOX_DATABASE_URL"] or f"sqlite:///{instance / 'sandbox.db'}",
                      instance)
        if cfg["SANDBOX_MODE"] else _database_url(raw["DATABASE_URL"], instance))
    cfg["DISPLAY_TIMEZONE"] = _display_timezone(raw["DISPLAY_TIMEZONE"])
    _sso_settings(cfg, raw)
    cfg["SALES_URL"] = str(raw["SALES_URL"]).strip()
    if urlsplit(cfg["SALES_URL"]).scheme not in ("http", "https"):
        raise ConfigError("SALES_URL must be an http(s) address, like "
                          "https://withgiga.ai/contact.")
    cfg["SANDBOX_STATE_PATH"] = raw["SANDBOX_STATE_PATH"] or str(instance / "sandbox-state.json")
    cfg["INSTANCE_PATH"] = str(instance)
    return cfg


def _upstream_settings(cfg, raw, testing):
    """The key, the mode (sandbox only when asked for and no key is set) and the API's
    address. Raises ``ConfigError``."""
    key = str(raw["GIGA_API_KEY"] or "").strip() or None
    sandbox_asked = _flag("GIGA_SANDBOX", raw["GIGA_SANDBOX"])
    if key is None and not sandbox_asked:
        raise ConfigError("GIGA_API_KEY is not set. Set GIGA_API_KEY to the account's secret "
                          "key, or GIGA_SANDBOX=1 to run against the built-in sandbox "
                          "(demo accounts, no real money).")
    cfg["GIGA_API_KEY"] = key
    # the key wins: a real deployment never falls into the sandbox by a stray setting
    cfg["SANDBOX_MODE"] = key is None
    cfg["SANDBOX_IGNORED"] = key is not None and sandbox_asked
    url = str(raw["GIGA_API_URL"]).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"GIGA_API_URL must be an http(s) URL, got {url!r}.")
    if parts.scheme == "http" and not cfg["SANDBOX_MODE"] and not testing \
            and parts.hostname not in LOOPBACK:
        raise ConfigError("GIGA_API_URL must use https: the API key travels with every request.")
    cfg["GIGA_API_URL"] = url


def _secret_key(cfg, secret, instance: Path, testing: bool, *, name="SECRET_KEY",
                uses="signs sessions") -> str:
    """``SECRET_KEY`` (or ``API_TOKEN_PEPPER``, the key the API tokens' HMACs are made
    with): required and strong with a real key; in sandbox mode one is made and kept
    under ``instance/``. Raises ``ConfigError``."""
    if not cfg["SANDBOX_MODE"] and not testing:
        if not secret:
            raise ConfigError(f"{name} is required when GIGA_API_KEY is set (it {uses}). "
                              f"Generate one with: {MAKE_A_SECRET}")
        if problem := _secret_key_problem(secret):
            raise ConfigError(f"{name} is too weak: {problem}. Generate one with: "
                              f"{MAKE_A_SECRET}")
    return secret or _sandbox_secret(instance, testing,
                                     "sandbox-" + name.lower().replace("_", "-"))


def _numbers(cfg, raw):
    """Limits, lifetimes and amounts. Raises ``ConfigError``."""
    cfg["CHECKOUT_ALLOWED_HOSTS"] = _hosts(raw["CHECKOUT_ALLOWED_HOSTS"])
    cfg["RECHARGE_MIN"] = _money("RECHARGE_MIN", raw["RECHARGE_MIN"])
    cfg["SPIKE_MIN_AMOUNT"] = _money("SPIKE_MIN_AMOUNT", raw["SPIKE_MIN_AMOUNT"])
    cfg["RECHARGE_MAX"] = _money("RECHARGE_MAX", raw["RECHARGE_MAX"])
    if cfg["RECHARGE_MAX"] < cfg["RECHARGE_MIN"]:
        raise ConfigError("RECHARGE_MAX must not be below RECHARGE_MIN.")
    for name in ("BILLING_CACHE_TTL", "PLANS_CACHE_TTL", "STALE_MAX_AGE", "UPSTREAM_GET_RETRIES",
                 "UPSTREAM_RESERVED_FOR_ACTIONS",
                 "SESSION_IDLE_MINUTES", "SESSION_MAX_HOURS", "TRUST_PROXY",
                 "LOGIN_FAILURE_WINDOW_MINUTES", "SANDBOX_PORT", "DATABASE_START_WAIT_SECONDS"):
        cfg[name] = _int(name, raw[name])
    cfg["SANDBOX_SPEND_PER_HOUR"] = _amount("SANDBOX_SPEND_PER_HOUR",
                                            raw["SANDBOX_SPEND_PER_HOUR"])
    # a year's chart and a month to spare: no chart's days are ever cut by the retention
    cfg["HISTORY_DAYS"] = _int("HISTORY_DAYS", raw["HISTORY_DAYS"], minimum=MIN_HISTORY_DAYS)
    for name in ("UPSTREAM_BUDGET_PER_MINUTE", "BREAKER_THRESHOLD", "BREAKER_COOLDOWN",
                 "ACTIONS_PER_MINUTE", "TYPOS_PER_MINUTE", "LOGIN_MAX_FAILURES", "LOGIN_MAX_FAILURES_PER_ADDRESS",
                 "SESSION_MAX_PER_USER", "API_REQUESTS_PER_MINUTE", "API_REQUESTS_PER_HOUR",
                 "API_FAILURES_PER_MINUTE",
                 "UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_DEADLINE", "DATABASE_WAIT_SECONDS"):
        cfg[name] = _int(name, raw[name], minimum=1)
    if cfg["UPSTREAM_RESERVED_FOR_ACTIONS"] >= cfg["UPSTREAM_BUDGET_PER_MINUTE"]:
        raise ConfigError("UPSTREAM_RESERVED_FOR_ACTIONS must be below "
                          "UPSTREAM_BUDGET_PER_MINUTE: page views need some of the budget too.")
    if cfg["STALE_MAX_AGE"] > 3600:
        raise ConfigError("STALE_MAX_AGE must be at most 3600 seconds: old figures mislead.")


def _sandbox_secret(instance: Path, testing: bool, file_name: str) -> str:
    """A random key kept under ``instance/`` so sandbox sessions (and tokens) survive a
    restart."""
    if testing:
        return secrets.token_hex(32)
    path = instance / file_name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
