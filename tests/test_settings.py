"""Settings are checked at start with a message that names the variable."""
import logging
import secrets

import pytest

from webapp import ConfigError
from webapp.settings import load_settings

LIVE = {"GIGA_API_KEY": "giga_sk_live_x"}
SANDBOX = {"GIGA_SANDBOX": "1"}
GOOD_SECRET = secrets.token_hex(32)


@pytest.mark.parametrize("env,message", [
    ({**LIVE}, "SECRET_KEY is required"),
    ({**LIVE, "SECRET_KEY": "dev"}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "short-but-random"}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET, "GIGA_API_URL": "http://api.withgiga.ai"}, "https"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET, "GIGA_API_URL": "ftp://x"}, "GIGA_API_URL"),
    # long but not random: a repeat, a pattern, one character
    ({**LIVE, "SECRET_KEY": "a" * 64}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "changeme" * 8}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "0" * 64}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "abcdefghijklmnopqrstuvwxyz0123456789"}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "Pq7" * 16}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET}, "API_TOKEN_PEPPER is required"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET, "API_TOKEN_PEPPER": "pepper" * 8},
     "API_TOKEN_PEPPER is too weak"),
    ({**SANDBOX, "RECHARGE_MIN": "abc"}, "RECHARGE_MIN"),
    ({**SANDBOX, "RECHARGE_MIN": "0"}, "RECHARGE_MIN"),
    ({**SANDBOX, "RECHARGE_MAX": "NaN"}, "RECHARGE_MAX"),
    ({**SANDBOX, "RECHARGE_MIN": "50", "RECHARGE_MAX": "10"}, "RECHARGE_MAX must not be below"),
    ({**SANDBOX, "RECHARGE_MIN": "5.001"}, "two decimals"),
    ({**SANDBOX, "BILLING_CACHE_TTL": "-1"}, "BILLING_CACHE_TTL"),
    ({**SANDBOX, "HISTORY_DAYS": "90"}, "HISTORY_DAYS must be at least 400"),
    ({**SANDBOX, "BILLING_CACHE_TTL": "soon"}, "BILLING_CACHE_TTL"),
    ({**SANDBOX, "UPSTREAM_BUDGET_PER_MINUTE": "0"}, "UPSTREAM_BUDGET_PER_MINUTE"),
    ({**SANDBOX, "CHECKOUT_ALLOWED_HOSTS": "https://checkout.stripe.com/"},
     "CHECKOUT_ALLOWED_HOSTS"),
    ({**SANDBOX, "GIGA_SANDBOX": "maybe"}, "GIGA_SANDBOX must be 1 or 0"),
    ({**SANDBOX, "SALES_URL": "javascript:alert(1)"}, "SALES_URL"),
])
def test_bad_settings_stop_start_up_with_a_clear_message(tmp_path, env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert message in str(info.value)


@pytest.mark.parametrize("env", [{}, {"GIGA_API_KEY": ""}, {"GIGA_API_KEY": "  "},
                                 {"GIGA_SANDBOX": "0"}, {"GIGA_API_KEY": "", "GIGA_SANDBOX": ""}],
                         ids=["nothing", "empty key", "blank key", "sandbox 0", "both empty"])
def test_neither_a_key_nor_sandbox_mode_stops_start_up(tmp_path, env):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert "GIGA_API_KEY" in str(info.value) and "GIGA_SANDBOX=1" in str(info.value)


def test_sandbox_mode_only_when_asked_for(tmp_path):
    cfg = load_settings(environ={"GIGA_SANDBOX": "1", "GIGA_API_KEY": ""},
                        overrides={"INSTANCE_PATH": str(tmp_path)})
    assert cfg["SANDBOX_MODE"] and cfg["GIGA_API_KEY"] is None


def test_the_key_wins_over_sandbox_mode_and_says_so(tmp_path, fault_server, caplog):
    from .conftest import make_app
    caplog.set_level(logging.WARNING)
    app = make_app(tmp_path, GIGA_SANDBOX="1", GIGA_API_KEY="giga_sk_live_y",
                   GIGA_API_URL=fault_server.url)
    assert not app.config["SANDBOX_MODE"] and app.config["GIGA_API_URL"] == fault_server.url
    assert "SANDBOX" not in app.config and "GIGA_SANDBOX=1 is ignored" in caplog.text


def test_defaults(tmp_path):
    cfg = load_settings(environ=SANDBOX, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert cfg["SANDBOX_MODE"] and cfg["GIGA_API_URL"] == "https://api.withgiga.ai"
    assert cfg["CHECKOUT_ALLOWED_HOSTS"] == ("checkout.stripe.com",)
    assert str(cfg["RECHARGE_MIN"]) == "5" and str(cfg["RECHARGE_MAX"]) == "10000"
    assert cfg["BILLING_CACHE_TTL"] == 30 and cfg["UPSTREAM_BUDGET_PER_MINUTE"] == 30
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'sandbox.db'}"
    assert cfg["SALES_URL"] == "https://withgiga.ai/contact"


def test_sandbox_mode_never_uses_the_real_database(tmp_path):
    cfg = load_settings(environ={**SANDBOX, "DATABASE_URL": "postgres://u:p@db/giga"},
                        overrides={"INSTANCE_PATH": str(tmp_path)})
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'sandbox.db'}"


def test_live_mode_with_good_secret(tmp_path):
    cfg = load_settings(environ={**LIVE, "SECRET_KEY": GOOD_SECRET,
                                 "API_TOKEN_PEPPER": secrets.token_hex(32),
                                 "DATABASE_URL": "postgres://u:p@db/giga"},
                        overrides={"INSTANCE_PATH": str(tmp_path)})
    assert not cfg["SANDBOX_MODE"] and cfg["SECRET_KEY"] == GOOD_SECRET
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/giga"


@pytest.mark.parametrize("name", ["SECRET_KEY", "API_TOKEN_PEPPER"])
def test_sandbox_secret_survives_restart(tmp_path, name):
    a = load_settings(environ=SANDBOX, overrides={"INSTANCE_PATH": str(tmp_path)})
    b = load_settings(environ=SANDBOX, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert a[name] == b[name] and len(a[name]) >= 32
    # two keys, not one used twice: a leaked session key does not key the tokens
    assert a["SECRET_KEY"] != a["API_TOKEN_PEPPER"]


def test_api_key_never_reaches_pages_or_logs(tmp_path, fault_server, caplog):
    from .conftest import make_app
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_TOPSECRET")
    client = app.test_client()
    with app.app_context():
        from webapp.services.users import create_user
        create_user("a@example.com", "admin", "long-enough-pw")
    client.post("/signin", data={"email": "a@example.com", "password": "long-enough-pw"})
    pages = [client.get(p).get_data(as_text=True) for p in ("/billing", "/audit", "/users",
                                                              "/billing/plans/free")]
    pages.append(client.post("/billing/topup", data={"amount": "5", "nonce": "k" * 24}).location)
    assert all("TOPSECRET" not in (p or "") for p in pages)
    assert "TOPSECRET" not in caplog.text
    with app.app_context():
        from webapp.models import AuditEntry
        assert all("TOPSECRET" not in str(vars(e)) for e in AuditEntry.query.all())


def test_debug_is_off_by_default(tmp_path, sandbox):
    from .conftest import make_app
    assert make_app(tmp_path, SANDBOX=sandbox).debug is False


def test_the_flask_command_without_a_key_or_sandbox_says_so_plainly(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {k: v for k, v in os.environ.items() if k not in ("GIGA_API_KEY", "GIGA_SANDBOX")}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", "run",
                             "--port", "0"], cwd=Path(__file__).resolve().parents[1], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "GIGA_API_KEY" in result.stderr and "GIGA_SANDBOX=1" in result.stderr


def test_every_setting_the_code_reads_is_in_the_readme_table():
    """A newcomer finds each variable the dashboard or gunicorn.conf.py reads in the
    README's settings table."""
    import re
    from pathlib import Path
    from webapp.settings import DEFAULTS
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    table = readme[readme.index("## Settings"):readme.index("## How it behaves")]
    read = set(DEFAULTS) | set(re.findall(r'os\.environ\.get\("([A-Z_]+)"',
                                          (root / "gunicorn.conf.py").read_text()))
    assert {"BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS"} <= read
    assert sorted(name for name in read if f"`{name}`" not in table) == []


def test_a_redis_that_does_not_answer_is_named_by_host_and_port(tmp_path, sandbox, caplog):
    from .conftest import make_app
    from .support.net import closed_port
    port = closed_port()
    with caplog.at_level("WARNING"):
        make_app(tmp_path, SANDBOX=sandbox, REDIS_URL=f"redis://:s3cret@127.0.0.1:{port}/0")
    said = [r.getMessage() for r in caplog.records if "REDIS_URL" in r.getMessage()]
    assert said and f"127.0.0.1:{port}" in said[0] and "s3cret" not in said[0]
