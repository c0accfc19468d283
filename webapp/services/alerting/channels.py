"""Where alerts go: email over SMTP and a JSON webhook.

Each ``send_*`` either delivers or raises ``DeliveryFailed`` with a reason
fit for the Alerts page (never a password or the webhook's secret).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import requests
from markupsafe import escape

from ...settings import LOOPBACK

SIGNATURE_HEADER = "X-Giga-Signature"


class DeliveryFailed(Exception):
    """The channel did not take the alert; the message says why."""


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(alert, public_url: str | None) -> bytes:
    """Slack-compatible ``text`` plus the structured fields (figures as strings)."""
    link = f" {public_url}" if public_url else ""
    figures = json.loads(alert.figures)
    doc = {"text": f"WithGiga billing: {alert.title}. {alert.body}{link}",
           "rule": alert.rule, "title": alert.title, "threshold": figures.get("threshold"),
           "figures": figures, "period": {"start": figures.get("periodStart"),
                                          "end": figures.get("periodEnd")},
           "time": alert.fired_at.isoformat(), "dashboard": public_url}
    return json.dumps(doc, separators=(",", ":")).encode()


def send_webhook(url: str, body: bytes, secret: str | None, timeout: float = 10.0) -> None:
    """POST ``body`` to ``url``; redirects are not followed. Raises ``DeliveryFailed``."""
    headers = {"Content-Type": "application/json", "User-Agent": "giga-billing-dashboard"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=(3, timeout),
                             allow_redirects=False)
    except requests.RequestException as exc:
        raise DeliveryFailed(f"could not reach the webhook ({type(exc).__name__})") from None
    if not 200 <= resp.status_code < 300:
        raise DeliveryFailed(f"the webhook answered HTTP {resp.status_code}")


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
