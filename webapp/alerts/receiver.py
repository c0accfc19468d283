"""A webhook receiver to try alerts with:  python -m webapp.alerts.receiver [--port 9000]

Prints each alert it receives, once: a delivery sent again (delivery is at
least once) is recognised by its X-Giga-Delivery id and dropped. With
ALERT_WEBHOOK_SECRET in its environment it checks each request as a real
receiver should (signature over timestamp and body, timestamp within five
minutes) and refuses, with a 401, one that fails. Loopback only; for trying
the dashboard out, not for production (it remembers ids only while it runs).
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import threading
import time

from ..services.alerting.channels import DELIVERY_HEADER, verify


def _text(body: bytes) -> str:
    """The alert's text, or the body as it came when it is not one of ours."""
    try:
        return str(json.loads(body).get("text"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    secret = os.environ.get("ALERT_WEBHOOK_SECRET")
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
            delivery = self.headers.get(DELIVERY_HEADER, "")
            if secret and (problem := verify(secret, self.headers, body, time.time())):
                print(f"REFUSED delivery {delivery or '(no id)'}: {problem}", flush=True)
                return self._answer(401)
            with lock:  # one id at a time, so two copies at once still print once
                repeat = bool(delivery) and delivery in seen
                seen.add(delivery)
            if repeat:
                print(f"(repeat of delivery {delivery}, already printed: dropped)", flush=True)
            else:
                print(_text(body) + (" (signature ok)" if secret else ""), flush=True)
            self._answer(204)  # a repeat too: the sender stops sending it

        def _answer(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"Listening on http://127.0.0.1:{args.port}/ -- set "
          f"ALERT_WEBHOOK_URL=http://127.0.0.1:{args.port}/hook", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
