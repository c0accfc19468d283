"""Two requests at once, for tests of what must hold under concurrency."""
import threading


def demote_each_other(app, first: str, second: str) -> list[str]:
    """Two admins demote each other at the same moment; returns the two outcomes
    (``demoted`` / ``refused``), sorted."""
    from webapp.services.users import UserError, set_role

    barrier = threading.Barrier(2)
    outcomes = {}

    def demote(email):
        with app.app_context():
            barrier.wait()
            try:
                set_role(email, "viewer", actor=("test", "cli"))
                outcomes[email] = "demoted"
            except UserError:
                outcomes[email] = "refused"

    threads = [threading.Thread(target=demote, args=(e,)) for e in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(outcomes.values())


def wrong_passwords_at_once(app, monkeypatch, n=40, address="10.4.0.1") -> tuple[list, list]:
    """``n`` wrong passwords for finance@demo.test from one ``address``, all at once;
    returns the passwords actually checked and the answers' statuses."""
    from webapp.models import User

    checks, check = [], User.check_password

    def counted(user, password):
        checks.append(password)
        return check(user, password)
    monkeypatch.setattr(User, "check_password", counted)
    start = threading.Barrier(n, timeout=60)
    statuses = []

    def attempt(i):
        client = app.test_client()
        start.wait()
        statuses.append(client.post("/signin", data={
            "email": "finance@demo.test", "password": f"wrong-{i}"},
            environ_base={"REMOTE_ADDR": address}).status_code)
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return checks, statuses
