"""A webhook receiver to try alerts with:  python -m webapp.alerts.receiver [--port 9000]

Prints each alert it receives (and whether its signature checks out when
ALERT_WEBHOOK_SECRET is set in its environment). Loopback only; for trying
the dashboard out, not for production.
"""
from __future__ import annotations

import argparse
import hmac
import http.server
import json
import os

from ..services.alerting.channels import SIGNATURE_HEADER, signature


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    secret = os.environ.get("ALERT_WEBHOOK_SECRET")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
            verdict = ""
            if secret:
                good = hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""),
                                           signature(secret, body))
                verdict = " (signature ok)" if good else " (SIGNATURE DOES NOT MATCH)"
            try:
                print(json.loads(body).get("text", body.decode(errors="replace")) + verdict,
                      flush=True)
            except ValueError:
                print(body.decode(errors="replace") + verdict, flush=True)
            self.send_response(204)
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
