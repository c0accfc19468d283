"""The outbox of checkout settlements, on its own: its lock is never held across a
database wait, a line cut short never swallows the next, faults of its file are
answered without raising, and its folder is ``INSTANCE_PATH``.

What the money path does with it (a locked database, a replay, another host) is in
``test_store_faults.py``; twelve processes on one outbox in ``test_outbox_processes.py``.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time

import pytest

from webapp import create_app
from webapp.gateway.redis_store import connect
from webapp.services.checkouts.outbox import Outbox, OutboxUnavailable, database_key
from webapp.services.checkouts.settlement import outbox
from webapp.settings import ConfigError, load_settings

from .conftest import make_app
from .support.net import closed_port

CHECKOUT = "https://checkout.stripe.com/c/pay/cs_test_kept"
LOGGER = "webapp.services.checkouts.outbox"


def _kept(n: int) -> dict:
    return {"outcome": "sent to checkout", "checkout_url": f"{CHECKOUT}{n}",
            "request_id": f"req-{n}"}


@pytest.fixture
def box(tmp_path) -> Outbox:
    """The outbox of a dashboard with a real key (SQLite, ``tmp_path`` as its folder)."""
    return outbox(make_app(tmp_path, GIGA_API_KEY="giga_sk_test_outbox"))


def test_a_flush_waiting_on_the_database_holds_no_lock(box):
    """While a flush waits for the database, a request keeps its own settlement and a
    replay finds one at once; what was kept meanwhile stays when the flush is done."""
    box.keep(1, _kept(1))
    waiting, answer = threading.Event(), threading.Event()
    written = []

    def slow_database(entry_id, fields):
        waiting.set()
        answer.wait(3)
        written.append(entry_id)

    flusher = threading.Thread(target=box.flush, args=(slow_database,), daemon=True)
    flusher.start()
    assert waiting.wait(5)
    try:
        started = time.monotonic()
        assert box.keep(2, _kept(2))
        assert box.find(1) == _kept(1) and box.find(2) == _kept(2)
        took = time.monotonic() - started
    finally:
        answer.set()
        flusher.join(10)
    assert took < 0.5
    assert written == [1]
    assert box.waiting() == [(2, _kept(2))]


def test_the_background_flush_leaves_the_file_to_a_process_holding_its_lock(box):
    box.keep(1, _kept(1))
    flushed = []
    with open(box.path.with_suffix(".lock"), "a") as other:  # as another process holds it
        fcntl.flock(other, fcntl.LOCK_EX)
        try:
            flusher = threading.Thread(
                target=lambda: flushed.append(box.flush(lambda *kept: None)), daemon=True)
            flusher.start()
            flusher.join(2)
            skipped = not flusher.is_alive()
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)
    flusher.join(5)
    assert skipped and flushed == [0]
    assert box.waiting() == [(1, _kept(1))]  # left for the next turn


def test_a_line_cut_short_never_swallows_the_next_settlement(box, caplog):
    box.keep(1, _kept(1))
    box.keep(2, _kept(2))
    os.truncate(box.path, box.path.stat().st_size - 12)  # a full disk cut line 2 short
    cut = box.path.read_bytes().split(b"\n")[1]
    assert box.keep(3, _kept(3))
    assert box.find(3) == _kept(3)
    written = []
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert box.flush(lambda entry_id, fields: written.append(entry_id)) == 2
        box.keep(4, _kept(4))
        assert box.flush(lambda entry_id, fields: written.append(entry_id)) == 1
    assert written == [1, 3, 4]
    assert box.rejected.read_bytes() == cut + b"\n"  # moved aside whole, once
    said = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(said) == 1 and cut.decode() in said[0]
    assert box.waiting() == [] and not box.path.exists()


def test_lines_of_another_database_are_left_alone(tmp_path):
    ours, theirs = Outbox(tmp_path, "ours"), Outbox(tmp_path, "theirs")
    theirs.keep(1, _kept(1))
    ours.keep(2, _kept(2))
    assert ours.find(1) is None and ours.waiting() == [(2, _kept(2))]
    written = []
    assert ours.flush(lambda entry_id, fields: written.append(entry_id)) == 1
    assert written == [2]
    assert theirs.waiting() == [(1, _kept(1))]


def test_a_line_from_before_lines_named_their_database_is_taken_by_a_real_deployment_only(
        tmp_path):
    (tmp_path / "unsettled-checkouts.jsonl").write_text(
        json.dumps({"entry": 1, "fields": _kept(1)}) + "\n")  # as the previous release wrote
    assert Outbox(tmp_path, "sandbox").waiting() == []
    assert Outbox(tmp_path, "real", adopt_unkeyed=True).waiting() == [(1, _kept(1))]


def test_the_database_key_names_the_database_not_its_password_or_driver(tmp_path):
    key = database_key("postgresql+psycopg://giga:old-secret@db.internal:5432/billing")
    assert key == database_key("postgresql://giga:new-secret@db.internal:5432/billing")
    assert key != database_key("postgresql+psycopg://giga:old-secret@db.internal:5432/sandbox")
    assert "secret" not in key and "billing" not in key
    assert database_key(f"sqlite:///{tmp_path / 'a.db'}") != database_key(
        f"sqlite:///{tmp_path / 'b.db'}")


@pytest.mark.parametrize("fault", ["a folder in its place", "its folder under a file",
                                   "a full disk"])
def test_an_outbox_that_cannot_be_written_raises_nothing_and_logs_every_field(
        tmp_path, caplog, fault):
    folder = tmp_path
    if fault == "its folder under a file":
        (tmp_path / "file").write_text("")
        folder = tmp_path / "file" / "instance"
    box = Outbox(folder, "ours")
    if fault == "a folder in its place":
        box.path.mkdir()
    elif fault == "a full disk":
        box.path.symlink_to("/dev/full")  # every write: ENOSPC, as root too
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert box.keep(1, _kept(1)) is False
        assert box.keep(2, _kept(2)) is False
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(lost) == 2 and f"{CHECKOUT}1" in lost[0] and "req-2" in lost[1]
    assert len([r for r in caplog.records if "cannot be kept in" in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in caplog.records)  # words, not tracebacks


def test_an_outbox_that_cannot_be_read_is_an_error_of_its_own(tmp_path):
    box = Outbox(tmp_path, "ours")
    box.path.mkdir()
    with pytest.raises(OutboxUnavailable, match="Is a directory"):
        box.find(1)
    with pytest.raises(OutboxUnavailable):
        box.flush(lambda *kept: None)


def test_with_redis_away_the_file_is_the_last_resort(tmp_path, caplog):
    box = Outbox(tmp_path, "ours", redis_client=connect(f"redis://127.0.0.1:{closed_port()}/0"))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert box.keep(1, _kept(1))
        assert box.find(1) == _kept(1)
        written = []
        assert box.flush(lambda entry_id, fields: written.append(entry_id)) == 1
    assert written == [1] and box.waiting() == []
    assert len([r for r in caplog.records if "cannot be kept in Redis" in r.getMessage()]) == 1


def test_both_copies_of_a_settlement_are_written_and_removed(tmp_path, redis_server):
    box = Outbox(tmp_path, "ours", redis_client=connect(redis_server.url))
    box.keep(1, _kept(1))
    assert box.waiting() == [(1, _kept(1))]
    with redis_server.client() as r:
        assert r.hgetall("giga:unsettled-checkouts:ours") == {"1": json.dumps(
            _kept(1), sort_keys=True)}
    written = []
    box.flush(lambda entry_id, fields: written.append(entry_id))
    assert written == [1, 1]  # from Redis, then from the file: the second changes nothing
    assert box.waiting() == []
    with redis_server.client() as r:
        assert r.keys("giga:unsettled-checkouts:*") == []


def test_instance_path_from_the_environment_holds_what_the_dashboard_keeps(
        tmp_path, monkeypatch):
    folder = tmp_path / "elsewhere" / "instance"  # not there yet: made at first use
    sandbox = load_settings(environ={"GIGA_SANDBOX": "1", "INSTANCE_PATH": str(folder)})
    assert sandbox["INSTANCE_PATH"] == str(folder)
    assert sandbox["SANDBOX_STATE_PATH"] == str(folder / "sandbox-state.json")
    assert sandbox["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{folder / 'sandbox.db'}"
    assert (folder / "sandbox-secret-key").is_file()
    real = load_settings(environ={"GIGA_API_KEY": "giga_sk_test", "INSTANCE_PATH": str(folder)},
                         overrides={"TESTING": True})
    assert real["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{folder / 'dashboard.db'}"
    monkeypatch.setenv("INSTANCE_PATH", str(folder))
    app = create_app({"TESTING": True, "GIGA_API_KEY": "giga_sk_test",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"})
    assert app.instance_path == str(folder)
    assert outbox(app).path.parent == folder
    assert list(folder.glob("static-*/app.*.css"))  # the hashed static files


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_instance_path_that_cannot_be_used_stops_the_start(tmp_path, where):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" if where == "a file" else tmp_path / "file" / "instance"
    with pytest.raises(ConfigError, match="INSTANCE_PATH"):
        load_settings(environ={"GIGA_SANDBOX": "1", "INSTANCE_PATH": str(path)})
