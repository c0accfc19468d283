"""Real alert receivers on loopback: an SMTP server (aiosmtpd) and a webhook endpoint."""
from __future__ import annotations

import email
import email.policy
import http.server
import socket
import threading
import time

from aiosmtpd.controller import Controller

from .net import closed_port


class MailBox:
    """An SMTP server that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append(email.message_from_bytes(envelope.content,
                                                             policy=email.policy.default))
                return "250 OK"
        self.port = closed_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def close(self):
        self._controller.stop()


class WebhookReceiver:
    """An HTTP endpoint that records each POST; ``status`` sets its answer, and it can
    be stopped and started again on the same port, as a receiver that was down."""

    def __init__(self):
        self.port = closed_port()
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        #: seconds to wait before answering, as a slow chat service would
        self.delay = 0.0
        self._server = None
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                          body))
                self.send_response(receiver.status)
                if receiver.status in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    close = stop


class BlackHole:
    """A webhook address that takes the connection and never answers: a sender
    writing to it is mid-delivery for as long as it waits."""

    def __init__(self):
        self.port = closed_port()
        self.connected = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(8)
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connected.set()

    def close(self):
        self._sock.close()
        for conn in self._held:
            conn.close()
