"""``flask users ...``: create, list, set-role, delete, and their errors."""


def test_create_list_set_role_delete(runner, app):
    result = runner.invoke(args=["users", "create", "ana@example.com", "--role", "finance",
                                 "--password", "long-enough-pw"])
    assert result.exit_code == 0 and "Created ana@example.com (finance)" in result.output
    listing = runner.invoke(args=["users", "list"]).output
    assert "ana@example.com\tfinance\tpassword" in listing
    assert runner.invoke(args=["users", "set-role", "ana@example.com", "admin"]).exit_code == 0
    assert "ana@example.com\tadmin" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "delete", "ana@example.com"]).exit_code == 0
    assert "ana@example.com" not in runner.invoke(args=["users", "list"]).output


def test_password_is_prompted_when_omitted(runner, client):
    result = runner.invoke(args=["users", "create", "bo@example.com", "--role", "viewer"],
                           input="long-enough-pw\nlong-enough-pw\n")
    assert result.exit_code == 0, result.output
    resp = client.post("/signin", data={"email": "bo@example.com", "password": "long-enough-pw"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/billing"


def test_unknown_role(runner):
    result = runner.invoke(args=["users", "create", "x@example.com", "--role", "owner",
                                 "--password", "long-enough-pw"])
    assert result.exit_code != 0 and "owner" in result.output
    result = runner.invoke(args=["users", "set-role", "viewer@demo.test", "owner"])
    assert result.exit_code != 0


def test_duplicate_email(runner):
    result = runner.invoke(args=["users", "create", "FINANCE@demo.test", "--role", "viewer",
                                 "--password", "long-enough-pw"])
    assert result.exit_code == 1 and "already exists" in result.output


def test_bad_email(runner):
    for bad in ("not-an-email", "a@b", "@example.com", "a b@example.com"):
        result = runner.invoke(args=["users", "create", bad, "--role", "viewer",
                                     "--password", "long-enough-pw"])
        assert result.exit_code == 1 and "not a valid email" in result.output


def test_short_password_and_unknown_user(runner):
    result = runner.invoke(args=["users", "create", "c@example.com", "--role", "viewer",
                                 "--password", "short"])
    assert result.exit_code == 1 and "at least 12" in result.output
    result = runner.invoke(args=["users", "delete", "ghost@example.com"])
    assert result.exit_code == 1 and "No user" in result.output


def test_demo_accounts_exist_only_in_sandbox_mode(tmp_path, sandbox):
    from .conftest import make_app
    from webapp.models import User
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    app = make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=db_url)
    with app.app_context():
        assert {u.email for u in User.query.all()} >= {"admin@demo.test", "finance@demo.test",
                                                       "viewer@demo.test"}
    real = make_app(tmp_path, DATABASE_URL=db_url, GIGA_API_KEY="giga_sk_live",
                    GIGA_API_URL="https://api.withgiga.ai")
    with real.app_context():
        assert not User.query.filter(User.email.like("%@demo.test")).all()
