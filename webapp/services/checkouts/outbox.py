"""How a checkout attempt ended, kept while the database will not take it.

Once the billing API has answered, what it said (the checkout's address,
the request ID, the outcome) must not be lost because our own database had
a bad moment: the user is sent on, and the settlement waits here until
``flush`` writes it to its audit row (every web process every few seconds,
and the poller).

It waits in ``unsettled-checkouts.jsonl`` under ``INSTANCE_PATH``, shared by
the processes of this host, and, with ``REDIS_URL``, in Redis as well, where
every host finds it (a replay of the form may reach another host) and any
host writes it (this one may never come back). The file stays the last
resort: Redis may be away, or evict what it holds.

- Each settlement names the database it belongs to (``database_key``): a
  sandbox run from the same folder never takes production's.
- The file's lock is held for a file operation only, never across a
  database wait: ``flush`` reads the lines under the lock, writes them to
  the database without it, then, under the lock again, removes only what
  it wrote. The background flush only tries the lock (held by another
  process, the file waits for the next turn); a request waits for it at most
  ``LOCK_WAIT_SECONDS``; ``find`` reads without it (a line is added by one
  write, and the file is replaced whole by a rename).
- A line is added by one ``os.write`` on an ``O_APPEND`` descriptor, after a
  newline when the file does not end in one (a line cut short by a full
  disk never swallows the next settlement), then fsynced. A line that cannot
  be read is moved to ``unsettled-checkouts.jsonl.rejected`` and logged, once.
- An OS error on the file is ``OutboxUnavailable`` to whoever finds or
  flushes (``keep`` returns False only when Redis did not take it either),
  and one log line a spell; so is Redis being away.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

FILE_NAME = "unsettled-checkouts.jsonl"
#: the longest a request (or a flush removing what it wrote) waits for the file's lock,
#: which is only ever held for a file operation
LOCK_WAIT_SECONDS = 1.0
LOCK_POLL_SECONDS = 0.01
#: after a Redis command failed, Redis is left alone this long (each try may cost
#: the client's whole timeout)
REDIS_RECHECK_SECONDS = 1.0
#: what a kept settlement may say: the columns ``record.settle`` writes
FIELDS = frozenset({"outcome", "request_id", "checkout_url", "detail"})
#: how much of an unreadable line the log shows (all of it is in the rejected file)
LOGGED_CHARS = 1000
#: what a Redis command returns when it could not be run
AWAY = object()


class OutboxUnavailable(Exception):
    """The outbox's file cannot be read or written (an OS error, named in the message)."""


class _LockBusy(Exception):
    """Another process held the file's lock past the wait."""


def database_key(url: str) -> str:
    """A short name for the database at ``url`` that tells nothing about it: a hash of
    its backend, user, host, port and database (a SQLite file by its full path). The
    password, driver and options are left out: they change while the database stays."""
    parts = make_url(url)
    backend, name = parts.get_backend_name(), parts.database or ""
    if backend == "sqlite" and name and name != ":memory:":
        name = str(Path(name).resolve())
    ident = "\0".join(str(p or "") for p in (backend, parts.username, parts.host, parts.port,
                                                name))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


class Outbox:
    """Settlements waiting for the database: ``keep`` them, ``find`` one, ``flush`` them.

    ``database`` is the ``database_key`` of the database they belong to. Lines
    written before lines named theirs are taken only with ``adopt_unkeyed`` (a
    deployment with a real key, never the sandbox). ``redis_client`` is a client
    for ``REDIS_URL`` (short timeouts, no retries), or None.
    """

    def __init__(self, folder: str | Path, database: str, *, redis_client=None,
                 adopt_unkeyed: bool = False):
        self.path = Path(folder) / FILE_NAME
        self.rejected = self.path.with_name(FILE_NAME + ".rejected")
        self._lock_path = self.path.with_suffix(".lock")
        self.database = database
        self._owners = {database, None} if adopt_unkeyed else {database}
        self._redis = redis_client
        self._redis_key = f"giga:unsettled-checkouts:{database}"
        self._redis_down_until = 0.0
        self._troubled = {"file": False, "Redis": False}

    # -- what the money path calls ------------------------------------------------------

    def keep(self, entry_id: int, fields: dict) -> bool:
        """Keep how attempt ``entry_id`` ended (``fields``: outcome, request_id,
        checkout_url, detail): added to the file and fsynced, and put in Redis when there
        is one. Waits at most ``LOCK_WAIT_SECONDS`` for the file (and Redis's timeout).
        Returns False, and logs every field, when neither took it; never raises."""
        line = json.dumps({"db": self.database, "entry": entry_id, "fields": fields},
                          sort_keys=True)
        on_disk = self._append(line.encode() + b"\n")
        in_redis = self._redis_call(lambda r: r.hset(
            self._redis_key, str(entry_id), json.dumps(fields, sort_keys=True))) is not AWAY
        if not (on_disk or in_redis):
            log.critical("could not keep the settlement of audit entry %s anywhere: %s",
                         entry_id, line)
            return False
        return True

    def find(self, entry_id: int) -> dict | None:
        """The kept settlement of attempt ``entry_id``, if it is still waiting. Reads the
        file without its lock, so it never waits for another process. Raises
        ``OutboxUnavailable`` when the file cannot be read and Redis has none."""
        failure = None
        try:
            mine, _ = self._sort(self._read())
        except OSError as exc:
            failure, mine = self._failed("file", exc), []
        found = [fields for _, entry, fields in mine if entry == entry_id]
        if found:
            return found[-1]
        kept = self._redis_call(lambda r: r.hget(self._redis_key, str(entry_id)))
        if kept is not AWAY and kept is not None:
            found = [fields for _, fields in self._from_redis({str(entry_id): kept})]
            if found:
                return found[0]
        if failure is not None:
            raise failure
        return None

    def waiting(self) -> list[tuple[int, dict]]:
        """Every settlement kept for this database (file and Redis), oldest first:
        ``(entry_id, fields)``. Raises ``OutboxUnavailable``."""
        try:
            mine, _ = self._sort(self._read())
        except OSError as exc:
            raise self._failed("file", exc) from exc
        kept = {entry: fields for _, entry, fields in mine}
        in_redis = self._redis_call(lambda r: r.hgetall(self._redis_key))
        for entry, fields in self._from_redis(in_redis if in_redis is not AWAY else {}):
            kept.setdefault(entry, fields)
        return sorted(kept.items())

    def flush(self, write) -> int:
        """``write(entry_id, fields)`` each settlement kept for this database (those in
        Redis, then those in the file), oldest first, until one raises: that exception
        propagates once what was written has left the outbox. While another process
        holds the file's lock, the file is left for the next turn. Returns how many were
        written. Raises ``OutboxUnavailable`` when the file cannot be read or rewritten."""
        return self._flush_redis(write) + self._flush_file(write)

    # -- the file ---------------------------------------------------------------------

    def _append(self, line: bytes) -> bool:
        """Add ``line`` to the file; False when it could not be."""
        try:
            with self._locked(LOCK_WAIT_SECONDS):
                _append_line(self.path, line)
        except (OSError, _LockBusy) as exc:
            self._failed("file", exc)
            return False
        self._works("file")
        return True

    def _flush_file(self, write) -> int:
        try:
            if not self.path.exists():  # the usual case: one stat, no lock
                return 0
            with self._locked(0):
                mine = self._snapshot()
        except _LockBusy:
            return 0  # another process is at the file: the next turn writes it
        except OSError as exc:
            raise self._failed("file", exc) from exc
        written = []
        try:
            for line, entry_id, fields in mine:
                write(entry_id, fields)
                written.append(line)
        finally:
            if written:
                self._remove(written)
        return len(written)

    def _snapshot(self) -> list[tuple[bytes, int, dict]]:
        """This database's settlements in the file, once its unreadable lines are moved
        aside (under the lock, where no line is half written by a live process).
        Raises ``OSError``."""
        data = self._read()
        mine, unreadable = self._sort(data)
        if unreadable:
            _append_line(self.rejected, b"\n".join(unreadable) + b"\n")
            self._rewrite(_without(data, unreadable))
            log.error("moved %d unreadable line(s) of %s to %s: %s", len(unreadable),
                      self.path, self.rejected,
                      [line[:LOGGED_CHARS].decode("utf-8", "replace") for line in unreadable])
        self._works("file")
        return mine

    def _remove(self, written: list[bytes]) -> None:
        """Take the lines just written to the database out of the file, and no other
        (lines added meanwhile stay). When the lock cannot be had in
        ``LOCK_WAIT_SECONDS`` they stay too, to be written again, which changes nothing
        (``record.settle`` leaves a settled row alone). Raises ``OutboxUnavailable``."""
        try:
            with self._locked(LOCK_WAIT_SECONDS):
                self._rewrite(_without(self._read(), written))
        except _LockBusy:
            log.info("%s was busy; the settlements just written leave it next time",
                     self.path)
        except OSError as exc:
            raise self._failed("file", exc) from exc

    def _read(self) -> bytes:
        """The file's bytes (none when there is no file). Raises ``OSError``."""
        try:
            with open(self.path, "rb") as kept:
                return kept.read()
        except FileNotFoundError:
            return b""

    def _sort(self, data: bytes) -> tuple[list[tuple[bytes, int, dict]], list[bytes]]:
        """This database's settlements in ``data`` as ``(line, entry_id, fields)``, and the
        lines that cannot be read. Other databases' lines are neither."""
        mine, unreadable = [], []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            parsed = _parse(line)
            if parsed is None:
                unreadable.append(line)
            elif parsed[0] in self._owners:
                mine.append((line, parsed[1], parsed[2]))
        return mine, unreadable

    def _rewrite(self, rest: list[bytes]) -> None:
        """The file holding just ``rest``, replaced whole by a rename (a reader without
        the lock sees the old file or the new). Raises ``OSError``."""
        if not rest:
            self.path.unlink(missing_ok=True)
            return
        temp = self.path.with_name(FILE_NAME + ".tmp")
        with open(temp, "wb") as out:
            out.write(b"\n".join(rest) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)
        _fsync_folder(self.path.parent)

    @contextmanager
    def _locked(self, wait: float):
        """Hold the file's lock, waiting at most ``wait`` seconds for another process to
        let go (0: only if it is free now). Raises ``_LockBusy`` past that, ``OSError``
        when the lock cannot be opened (or its folder made)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            _take_lock(fd, wait)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- Redis --------------------------------------------------------------------------

    def _flush_redis(self, write) -> int:
        kept = self._redis_call(lambda r: r.hgetall(self._redis_key))
        if kept is AWAY or not kept:
            return 0
        done = 0
        for entry_id, fields in sorted(self._from_redis(kept)):
            write(entry_id, fields)
            self._redis_forget(str(entry_id))
            done += 1
        return done

    def _from_redis(self, kept: dict) -> list[tuple[int, dict]]:
        """``(entry_id, fields)`` of each readable settlement in ``kept`` (a Redis hash);
        an unreadable one is logged and deleted."""
        out = []
        for field, value in kept.items():
            try:
                parsed = _settlement({"entry": int(field), "fields": json.loads(value)})
            except ValueError:
                parsed = None
            if parsed is None:
                log.error("deleted an unreadable settlement from Redis (%s): %r", field,
                          value[:LOGGED_CHARS])
                self._redis_forget(field)
            else:
                out.append(parsed)
        return out

    def _redis_forget(self, field) -> None:
        self._redis_call(lambda r: r.hdel(self._redis_key, field))

    def _redis_call(self, command):
        """``command(client)``'s result, or ``AWAY`` without Redis or when it fails (Redis
        is then left alone for ``REDIS_RECHECK_SECONDS``)."""
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return AWAY
        import redis  # loaded already by whoever made the client

        try:
            result = command(self._redis)
        except (redis.RedisError, OSError) as exc:
            self._redis_down_until = time.monotonic() + REDIS_RECHECK_SECONDS
            self._failed("Redis", exc)
            return AWAY
        self._works("Redis")
        return result

    # -- one log line a spell -----------------------------------------------------------

    def _failed(self, where: str, exc: BaseException) -> OutboxUnavailable:
        """Say, once a spell, that settlements cannot be kept in ``where`` ("file" or
        "Redis"); returns the error for the caller to raise."""
        if not self._troubled[where]:
            self._troubled[where] = True
            log.error("checkout settlements cannot be kept in %s now (%s); tried again at "
                      "each use, and said here once it works",
                      self.path if where == "file" else "Redis", exc)
        return OutboxUnavailable(f"{self.path}: {exc}")

    def _works(self, where: str) -> None:
        if self._troubled[where]:
            self._troubled[where] = False
            log.warning("checkout settlements can be kept in %s again",
                        self.path if where == "file" else "Redis")


def _parse(line: bytes) -> tuple[str | None, int, dict] | None:
    """``(database, entry_id, fields)`` of a line (database None for a line written
    before lines named theirs), or None when it cannot be read."""
    try:
        doc = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    kept = _settlement(doc)
    if kept is None or not isinstance(doc.get("db", ""), str):
        return None
    return doc.get("db"), kept[0], kept[1]


def _settlement(doc) -> tuple[int, dict] | None:
    """``(entry_id, fields)`` when ``doc`` is a settlement ``record.settle`` can write."""
    if not isinstance(doc, dict):
        return None
    entry, fields = doc.get("entry"), doc.get("fields")
    if type(entry) is not int or not isinstance(fields, dict) \
            or not isinstance(fields.get("outcome"), str) \
            or not all(k in FIELDS and isinstance(v, str) for k, v in fields.items()):
        return None
    return entry, fields


def _without(data: bytes, gone: list[bytes]) -> list[bytes]:
    """The lines of ``data`` but one of each of ``gone``."""
    rest = [line for line in data.split(b"\n") if line.strip()]
    for line in gone:
        if line in rest:
            rest.remove(line)
    return rest


def _append_line(path: Path, line: bytes) -> None:
    """``line`` added at the end of ``path`` by one write (after a newline when the file
    does not end in one), then fsynced. Raises ``OSError``."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a line cut short (a full disk): the next is never joined to it
        if os.write(fd, line) != len(line):
            raise OSError(errno.ENOSPC, "the line was cut short", str(path))
        os.fsync(fd)
    finally:
        os.close(fd)
    if not size:
        _fsync_folder(path.parent)  # the new file's name, as durable as its content


def _fsync_folder(folder: Path) -> None:
    """Raises ``OSError``."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take_lock(fd: int, wait: float) -> None:
    """``flock`` ``fd`` exclusively within ``wait`` seconds. Raises ``_LockBusy``."""
    give_up = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= give_up:
                raise _LockBusy(f"its lock was held by another process for {wait:g} s") \
                    from None
            time.sleep(LOCK_POLL_SECONDS)
