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
