"""A real HTTP server on loopback that misbehaves on purpose.

Each test sets ``server.handler`` to a function ``(method, path, body) ->
action``; actions are the small classes below. It speaks raw sockets so it
can do what a polite framework will not: hang, drip, reset, lie.
"""
from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
import uuid


class Respond:
    def __init__(self, status=200, body=b"", headers=None, content_type="application/json"):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.headers = {"Content-Type": content_type, **(headers or {})}


def ok(data):
    return Respond(200, json.dumps({"success": True, "data": data}))


def error(status, code, message="failed", hint=None, request_id=None, headers=None):
    err = {"code": code, "message": message, "requestId": request_id or str(uuid.uuid4())}
    if hint:
        err["hint"] = hint
    return Respond(status, json.dumps({"error": err}), headers)


class Hang:
    """Accept, read the request, say nothing for ``seconds``."""

    def __init__(self, seconds=30):
        self.seconds = seconds


class Drip:
    """Send a valid response one byte every ``interval`` seconds."""

    def __init__(self, response: Respond, interval=1.0):
        self.response = response
        self.interval = interval


class Reset:
    """Close the connection with a TCP RST before answering."""


BILLING = {"billing": {"plan": "starter-pro", "planCreditsRemaining": 74.50,
                       "prepaidBalance": 50.00, "totalBalance": 124.50,
                       "currentPeriodStart": "2024-03-01T00:00:00.000Z",
                       "currentPeriodEnd": "2024-04-01T00:00:00.000Z"}}
PLANS = {"plans": [
    {"id": "free", "name": "Free", "monthlyCredits": 10, "concurrentAgents": 1,
     "maxDurationHours": 1, "price": 0},
    {"id": "starter-pro", "name": "Starter Pro", "monthlyCredits": 100, "concurrentAgents": 5,
     "maxDurationHours": 8, "price": 29},
    {"id": "max", "name": "Max", "monthlyCredits": "custom", "concurrentAgents": "unlimited",
     "maxDurationHours": 24, "price": "custom"}]}


def healthy(method, path, body):
    """The contract's happy path: billing, plans, and checkouts on Stripe."""
    if path == "/api/billing":
        return ok(BILLING)
    if path == "/api/billing/plans":
        return ok(PLANS)
    return ok({"checkoutUrl": "https://checkout.stripe.com/c/pay/cs_test_123"})


def _render(resp: Respond) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
              404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(resp.status, "Status")
    head = [f"HTTP/1.1 {resp.status} {reason}", f"Content-Length: {len(resp.body)}",
            "Connection: close"] + [f"{k}: {v}" for k, v in resp.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + resp.body


class FaultServer:
    def __init__(self):
        self.handler = healthy
        self.requests: list[tuple[str, str, bytes, dict]] = []
        #: when each request arrived (``time.monotonic()``), in step with ``requests``
        self.arrivals: list[float] = []
        self._log_lock = threading.Lock()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                server._serve(self.request)

        class TCP(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._tcp = TCP(("127.0.0.1", 0), Handler)
        self.port = self._tcp.server_address[1]
        threading.Thread(target=self._tcp.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def count(self, prefix="/api/"):
        return sum(1 for r in self.requests if r[1].startswith(prefix))

    def times(self, path, since=0.0) -> list[float]:
        """When requests for exactly ``path`` arrived, from ``since`` on."""
        with self._log_lock:
            pairs = list(zip(self.arrivals, self.requests))
        return [t for t, r in pairs if r[1] == path and t >= since]

    def close(self):
        self._tcp.shutdown()
        self._tcp.server_close()

    def _serve(self, sock):
        method, path, body, headers = _read_request(sock)
        if method is None:
            return
        with self._log_lock:
            self.arrivals.append(time.monotonic())
            self.requests.append((method, path, body, headers))
        action = self.handler(method, path, body)
        try:
            if isinstance(action, Hang):
                time.sleep(action.seconds)
            elif isinstance(action, Reset):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif isinstance(action, Drip):
                for byte in _render(action.response):
                    sock.sendall(bytes([byte]))
                    time.sleep(action.interval)
            else:
                sock.sendall(_render(action))
        except OSError:
            pass
        finally:
            sock.close()


def _read_request(sock):
    sock.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None, None, None, None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            body += sock.recv(4096)
        return method, path, body, headers
    except (OSError, ValueError):
        return None, None, None, None
