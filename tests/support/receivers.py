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
    be stopped and started again on the same port, as a receiver that was down.

    It counts the requests it is answering at once (``most_in_flight``), and can hold
    its first ``hold`` requests unanswered until ``release`` is set, as a receiver
    still working on them while their sender dies."""

    def __init__(self):
        self.port = closed_port()
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        #: seconds to wait before answering, as a slow chat service would
        self.delay = 0.0
        self.hold = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self._quiet = threading.Condition()
        self._closing = threading.Event()
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
                with receiver._quiet:
                    index = len(receiver.received)
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                              body))
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                    receiver._quiet.notify_all()
                try:
                    receiver.respond(self, index)
                except OSError:
                    self.close_connection = True  # the sender went away: nobody to answer
                finally:
                    with receiver._quiet:
                        receiver.in_flight -= 1
                        receiver._quiet.notify_all()

            def log_message(self, *args):
                pass
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def respond(self, handler, index: int) -> None:
        """Answer request number ``index`` (from 0). Raises ``OSError`` when the sender
        is gone."""
        if index < self.hold:
            self.holding.set()
            self.release.wait()
        time.sleep(self.delay)
        handler.send_response(self.status)
        if self.status in (301, 302, 307, 308):
            handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def wait_received(self, count: int, seconds: float) -> bool:
        """Wait until ``count`` requests have come; False if fewer have after ``seconds``."""
        with self._quiet:
            return self._quiet.wait_for(lambda: len(self.received) >= count, seconds)

    def wait_quiet(self, seconds: float) -> bool:
        """Wait until no request is being answered; False if one still is after
        ``seconds``."""
        with self._quiet:
            return self._quiet.wait_for(lambda: self.in_flight == 0, seconds)

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self):
        self._closing.set()
        self.release.set()
        self.stop()


class DrippingReceiver(WebhookReceiver):
    """Answers its first ``drips`` requests one byte a second (a whole answer takes
    ``len(ANSWER)`` seconds), the later ones at once."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    def __init__(self, drips: int, every: float = 1.0):
        self.drips, self.every = drips, every
        super().__init__()

    def respond(self, handler, index):
        if index >= self.drips:
            return super().respond(handler, index)
        handler.close_connection = True
        for i in range(len(self.ANSWER)):
            handler.wfile.write(self.ANSWER[i:i + 1])
            if self._closing.wait(self.every):
                return


class HugeAnswerReceiver(WebhookReceiver):
    """Answers with ``size`` bytes of body as fast as the sender takes them, and
    counts how many the sender's socket took (``bytes_written``)."""

    CHUNK = 64 * 1024

    def __init__(self, size: int, status: int = 200):
        self.size, self.bytes_written = size, 0
        super().__init__()
        self.status = status

    def respond(self, handler, index):
        handler.close_connection = True
        handler.send_response(self.status)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(self.size))
        handler.end_headers()
        chunk = b"x" * self.CHUNK
        while self.bytes_written < self.size and not self._closing.is_set():
            handler.wfile.write(chunk)
            self.bytes_written += len(chunk)


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
