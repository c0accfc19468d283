"""HTTP exchanges that end by a deadline, whatever the server does.

requests' read timeout restarts with every byte, so a server that drips its
answer can hold a caller for ever: only a wall-clock wait bounds it.
``within`` runs an exchange on a helper thread and waits for it until the
deadline; when the wait runs out, the connections under the exchange are shut
down, so the helper thread gets an error at once and ends instead of reading
on. The billing API's client and the alert webhook both send this way, over a
session from ``abortable_session``.
"""
from __future__ import annotations

import socket
import threading
from typing import Callable, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..clock import Clock

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The exchange did not end before its deadline; its connections were shut down."""


# -- connections a timed-out call can close ------------------------------------

_tracking = threading.local()


class _Tracked:
    """Tells the thread that sends a request which connection carries it, so a
    caller whose deadline passes can close that connection under it."""

    def request(self, *args, **kwargs):
        carriers = getattr(_tracking, "carriers", None)
        if carriers is not None:
            carriers.append(self)
        return super().request(*args, **kwargs)


class _TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class AbortableAdapter(HTTPAdapter):
    """requests' adapter with connections that ``within`` can shut down."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def abortable_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (a new one when None) with adapters whose connections ``within``
    can shut down."""
    session = session or requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, AbortableAdapter())
    return session


def _abort(carriers) -> None:
    """Shut down the sockets under a call that outlived its deadline, so the
    thread blocked reading from them gets an error at once and ends."""
    for conn in list(carriers):
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the thread is on its way out


def within(deadline: float, clock: Clock, exchange: Callable[[], T], *,
           name: str = "http-deadline") -> T:
    """Run ``exchange()`` -- requests over an ``abortable_session`` -- on a helper
    thread and wait for it until ``deadline`` (a ``clock.monotonic()`` value).

    Returns what ``exchange`` returns and raises what it raises; raises
    ``DeadlinePassed`` when the deadline comes first (the connections it opened
    are shut down then, so the helper thread ends too).
    """
    outcome: dict = {}
    carriers: list = []
    done = threading.Event()

    def work():
        _tracking.carriers = carriers
        try:
            outcome["value"] = exchange()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
        finally:
            _tracking.carriers = None
            done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    if not done.wait(max(0.0, deadline - clock.monotonic())):
        _abort(carriers)
        raise DeadlinePassed()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
