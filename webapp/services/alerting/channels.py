"""Where alerts go: email over SMTP and a JSON webhook.

Each ``send_*`` either delivers or raises ``DeliveryFailed`` with a reason
fit for the Alerts page (never a password or the webhook's secret).

A webhook request carries three headers a receiver checks (the README shows
how): ``X-Giga-Delivery``, the same on every attempt of one delivery (so a
receiver drops a repeat: delivery is at least once); ``X-Giga-Timestamp``, Unix
seconds when the attempt was signed; and, with a secret, ``X-Giga-Signature:
v1=<hex>``, HMAC-SHA256 of ``<timestamp>.<body>``, as Stripe and Slack sign,
so a request captured on the way cannot be replayed once its time is past.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import requests
from markupsafe import escape

from ...clock import Clock
from ...giga.deadline import DeadlinePassed, abortable_session, within
from ...settings import LOOPBACK

DELIVERY_HEADER = "X-Giga-Delivery"
TIMESTAMP_HEADER = "X-Giga-Timestamp"
SIGNATURE_HEADER = "X-Giga-Signature"
#: the most of a webhook's answer read: a refusal's first words, never a flood
ANSWER_BYTES = 64 * 1024
#: names the delivery ids this dashboard makes (any fixed UUID would do)
_DELIVERY_IDS = uuid.UUID("5b0f4f4e-2a57-4c56-9d0e-6a1d2b9c7e31")


class DeliveryFailed(Exception):
    """The channel did not take the alert; the message says why."""


def delivery_id(delivery) -> str:
    """The id a receiver de-duplicates by: the same for every attempt of ``delivery``,
    different for every other delivery, in this database or another (a reset one,
    the sandbox's): a UUID named by the delivery's and its alert's unchanging fields."""
    alert = delivery.alert
    name = f"{delivery.id}|{alert.id}|{alert.key}|{alert.fired_at.timestamp():.6f}"
    return str(uuid.uuid5(_DELIVERY_IDS, name))


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256, keyed with the shared secret, of the timestamp as
    sent in its header, a dot, and the exact body."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(secret: str, headers, body: bytes, now: float, tolerance: int = 300) -> str | None:
    """Why a webhook request (its ``headers`` mapping and ``body``) is not one this
    dashboard signed within ``tolerance`` seconds of ``now``, or ``None`` when it is."""
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    if not (stamp.isascii() and stamp.isdigit()):
        return "no timestamp"
    if not hmac.compare_digest(headers.get(SIGNATURE_HEADER) or "",
                               signature(secret, stamp, body)):
        return "the signature does not match"
    if abs(now - int(stamp)) > tolerance:
        return (f"the timestamp is {abs(now - int(stamp)):.0f} s off, more than {tolerance}: "
                "too old (a replay?), or a clock is wrong")
    return None


def webhook_body(alert, public_url: str | None, delivery: str) -> bytes:
    """Slack-compatible ``text`` plus the structured fields (figures as strings) and
    the ``delivery`` id."""
    link = f" {public_url}" if public_url else ""
    figures = json.loads(alert.figures)
    doc = {"text": f"WithGiga billing: {alert.title}. {alert.body}{link}",
           "rule": alert.rule, "title": alert.title, "threshold": figures.get("threshold"),
           "figures": figures, "period": {"start": figures.get("periodStart"),
                                          "end": figures.get("periodEnd")},
           "time": alert.fired_at.isoformat(), "dashboard": public_url, "delivery": delivery}
    return json.dumps(doc, separators=(",", ":")).encode()


def webhook_headers(body: bytes, delivery: str, timestamp: int, secret: str | None) -> dict:
    """The request's headers: the delivery id and timestamp, signed when there is a
    ``secret``."""
    headers = {"Content-Type": "application/json", "User-Agent": "giga-billing-dashboard",
               "Accept-Encoding": "identity", DELIVERY_HEADER: delivery,
               TIMESTAMP_HEADER: str(timestamp)}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


def send_webhook(url: str, body: bytes, headers: dict, *, seconds: float, clock: Clock) -> None:
    """POST ``body`` to ``url``, the whole exchange over within ``seconds`` however
    slowly the receiver answers; redirects are not followed, and of the answer at
    most ``ANSWER_BYTES`` of a refusal are read. Raises ``DeliveryFailed``."""
    deadline = clock.monotonic() + seconds
    with abortable_session() as session:
        try:
            status, answer = within(deadline, clock, lambda: _post(
                session, url, body, headers, (min(3.0, seconds), seconds)), name="webhook")
        except DeadlinePassed:
            raise DeliveryFailed(f"the webhook did not answer within {seconds:g} s") from None
        except requests.RequestException as exc:
            raise DeliveryFailed(f"could not reach the webhook ({type(exc).__name__})") from None
    if not 200 <= status < 300:
        said = f": {answer}" if answer else ""
        raise DeliveryFailed(f"the webhook answered HTTP {status}{said}")


def _post(session, url, body, headers, timeout) -> tuple[int, str]:
    """One exchange: the status, and the first line of a refusal's answer (a 2xx is
    taken at its status line: its body is never read). Raises ``RequestException``."""
    resp = session.post(url, data=body, headers=headers, timeout=timeout, stream=True,
                        allow_redirects=False)
    with resp:
        if 200 <= resp.status_code < 300:
            return resp.status_code, ""
        try:
            raw = resp.raw.read(ANSWER_BYTES, decode_content=False)
        except Exception:  # urllib3's protocol errors mid-answer: the status says enough
            raw = b""
    return resp.status_code, _first_line(raw)


def _first_line(raw: bytes) -> str:
    """A receiver's refusal in words for the Alerts page: its first line, printable
    characters only, at most 200 of them."""
    text = raw.decode("utf-8", errors="replace").strip()
    line = text.splitlines()[0] if text else ""
    return "".join(c for c in line if c.isprintable())[:200]


def email_message(alert, sender: str, to: str, public_url: str | None) -> EmailMessage:
    """A plain-text and an HTML part saying what crossed, the figures and a link."""
    msg = EmailMessage()
    msg["Subject"] = f"WithGiga billing: {alert.title}"
    msg["From"] = sender
    msg["To"] = to
    link = f"\n\nOpen the dashboard: {public_url}" if public_url else ""
    msg.set_content(f"{alert.title}\n\n{alert.body}{link}\n")
    html_link = (f'<p><a href="{escape(public_url)}">Open the dashboard</a></p>'
                 if public_url else "")
    msg.add_alternative(f"<h1>{escape(alert.title)}</h1><p>{escape(alert.body)}</p>{html_link}",
                        subtype="html")
    return msg


def send_email(smtp_url: str, msg: EmailMessage, timeout: float = 15.0) -> None:
    """Send ``msg`` through ``smtp_url``. Raises ``DeliveryFailed``."""
    parts = urlsplit(smtp_url)
    host = parts.hostname
    try:
        if parts.scheme == "smtps":
            server = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout,
                                      context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(host, parts.port or 587, timeout=timeout)
        with server:
            if parts.scheme == "smtp":
                server.ehlo()
                if server.has_extn("starttls"):
                    server.starttls(context=ssl.create_default_context())
                    server.ehlo()
                elif host not in LOOPBACK:
                    raise DeliveryFailed("the mail server does not offer STARTTLS, and plain "
                                         "SMTP is allowed only on loopback")
            if parts.username:
                server.login(unquote(parts.username), unquote(parts.password or ""))
            server.send_message(msg)
    except DeliveryFailed:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"the mail server did not take it ({type(exc).__name__})") from None
