"""Settings are checked at start with a message that names the variable."""
import pytest

from webapp import ConfigError
from webapp.settings import load_settings

LIVE = {"GIGA_API_KEY": "giga_sk_live_x"}
GOOD_SECRET = "k" * 40


@pytest.mark.parametrize("env,message", [
    ({**LIVE}, "SECRET_KEY is required"),
    ({**LIVE, "SECRET_KEY": "dev"}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": "short-but-random"}, "SECRET_KEY is too weak"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET, "GIGA_API_URL": "http://api.withgiga.ai"}, "https"),
    ({**LIVE, "SECRET_KEY": GOOD_SECRET, "GIGA_API_URL": "ftp://x"}, "GIGA_API_URL"),
    ({"RECHARGE_MIN": "abc"}, "RECHARGE_MIN"),
    ({"RECHARGE_MIN": "0"}, "RECHARGE_MIN"),
    ({"RECHARGE_MAX": "NaN"}, "RECHARGE_MAX"),
    ({"RECHARGE_MIN": "50", "RECHARGE_MAX": "10"}, "RECHARGE_MAX must not be below"),
    ({"RECHARGE_MIN": "5.001"}, "two decimals"),
    ({"BILLING_CACHE_TTL": "-1"}, "BILLING_CACHE_TTL"),
    ({"BILLING_CACHE_TTL": "soon"}, "BILLING_CACHE_TTL"),
    ({"UPSTREAM_BUDGET_PER_MINUTE": "0"}, "UPSTREAM_BUDGET_PER_MINUTE"),
    ({"CHECKOUT_ALLOWED_HOSTS": "https://checkout.stripe.com/"}, "CHECKOUT_ALLOWED_HOSTS"),
])
def test_bad_settings_stop_start_up_with_a_clear_message(tmp_path, env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert message in str(info.value)


def test_defaults(tmp_path):
    cfg = load_settings(environ={}, overrides={"INSTANCE_PATH": str(tmp_path)})
    assert cfg["SANDBOX_MODE"] and cfg["GIGA_API_URL"] == "https://api.withgiga.ai"
    assert cfg["CHECKOUT_ALLOWED_HOSTS"] == ("checkout.stripe.com",)
    assert str(cfg["RECHARGE_MIN"]) == "5" and str(cfg["RECHARGE_MAX"]) == "10000"
    assert cfg["BILLING_CACHE_TTL"] == 30 and cfg["UPSTREAM_BUDGET_PER_MINUTE"] == 30
    assert cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")


def test_live_mode_with_good_secret(tmp_path):
    cfg = load_settings(environ={**LIVE, "SECRET_KEY": GOOD_SECRET,
                                 "DATABASE_URL": "postgres://u:p@db/giga"},
                        overrides={"INSTANCE_PATH": str(tmp_path)})
    assert not cfg["SANDBOX_MODE"] and cfg["SECRET_KEY"] == GOOD_SECRET
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/giga"


def test_sandbox_secret_survives_restart(tmp_path):
    a = load_settings(environ={}, overrides={"INSTANCE_PATH": str(tmp_path)})["SECRET_KEY"]
    b = load_settings(environ={}, overrides={"INSTANCE_PATH": str(tmp_path)})["SECRET_KEY"]
    assert a == b and len(a) >= 32


def test_api_key_never_reaches_pages_or_logs(tmp_path, fault_server, caplog):
    from .conftest import make_app
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_TOPSECRET")
    client = app.test_client()
    with app.app_context():
        from webapp.users.service import create_user
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
