"""How a checkout attempt ended, kept on disk while the database will not take it.

Once the billing API has answered, what it said (the checkout's address,
the request ID, the outcome) must not be lost because our own database had
a bad moment: the user is sent on, and the settlement waits here, in an
append-only file under ``instance/`` shared by the processes on this host
(each change under an exclusive file lock), until ``flush`` writes it to
its audit row. Every web process flushes every few seconds, and so does
the poller.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "unsettled-checkouts.jsonl"


class Outbox:
    """Settlements waiting for the database: ``keep`` them, ``find`` one, ``flush`` them."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILE_NAME
        self._lock_path = self.path.with_suffix(".lock")

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def keep(self, entry_id: int, fields: dict) -> bool:
        """Keep how attempt ``entry_id`` ended (``fields``: outcome, request_id,
        checkout_url, detail), written through to disk. Returns False, and logs every
        field, when even that fails."""
        line = json.dumps({"entry": entry_id, "fields": fields}, sort_keys=True) + "\n"
        try:
            with self._locked(), open(self.path, "a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            return True
        except OSError:
            log.critical("could not keep the settlement of audit entry %s: %s", entry_id,
                         line.strip(), exc_info=True)
            return False

    def _read(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        kept = []
        for line in text.splitlines():
            try:
                doc = json.loads(line)
                kept.append({"entry": int(doc["entry"]), "fields": dict(doc["fields"])})
            except (ValueError, KeyError, TypeError):
                log.error("ignoring an unreadable line in %s: %r", self.path, line[:200])
        return kept

    def waiting(self) -> list[tuple[int, dict]]:
        """Every kept settlement, oldest first: ``(entry_id, fields)``."""
        if not self.path.exists():
            return []
        with self._locked():
            return [(k["entry"], k["fields"]) for k in self._read()]

    def find(self, entry_id: int) -> dict | None:
        """The kept settlement of attempt ``entry_id``, if it is still waiting."""
        if not self.path.exists():
            return None
        with self._locked():
            found = [k["fields"] for k in self._read() if k["entry"] == entry_id]
        return found[-1] if found else None

    def flush(self, write) -> int:
        """``write(entry_id, fields)`` each kept settlement, oldest first, until one fails
        (``write`` raises); what was written leaves the file. Returns how many were."""
        if not self.path.exists():  # the usual case: one stat, no lock
            return 0
        with self._locked():
            kept = self._read()
            done = 0
            try:
                for item in kept:
                    write(item["entry"], item["fields"])
                    done += 1
            finally:
                if done:
                    self._rewrite(kept[done:])
        if done:
            log.info("wrote %d settlement(s) kept while the database was busy", done)
        return done

    def _rewrite(self, rest: list[dict]) -> None:
        if not rest:
            self.path.unlink(missing_ok=True)
            return
        temp = self.path.with_suffix(".tmp")
        temp.write_text("".join(json.dumps(k, sort_keys=True) + "\n" for k in rest),
                        encoding="utf-8")
        os.replace(temp, self.path)
