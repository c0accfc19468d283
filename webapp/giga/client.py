"""A typed client for the WithGiga billing API (see docs/giga-api-contract.md).

One ``requests.Session``, the Bearer key on every call, a connect timeout and
a *total* deadline on every call, results as dataclasses with ``Decimal``
money and aware datetimes, and every failure raised as a ``GigaError``.
The client never retries: retry policy belongs to the caller, who knows
whether a call is a read (safe) or a POST (not safe).
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import requests
from urllib3.exceptions import NewConnectionError

from ..clock import Clock
from .deadline import DeadlinePassed, abortable_session, within
from .errors import (BadResponse, ConnectionFailed, GigaError, Timeout)

#: a body larger than this is not a billing answer
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Billing:
    """The account's plan and balance now (``GET /api/billing``)."""

    plan: str
    plan_credits_remaining: Decimal
    prepaid_balance: Decimal
    total_balance: Decimal
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class Plan:
    """One plan on offer. A field the API gives as a word ("custom",
    "unlimited") keeps the word; numbers are ``Decimal``."""

    id: str
    name: str
    monthly_credits: Decimal | str
    concurrent_agents: Decimal | str
    max_duration_hours: Decimal | str
    price: Decimal | str

    @property
    def is_custom_priced(self) -> bool:
        """A custom-priced plan is sold by sales, never through checkout."""
        return isinstance(self.price, str)


@dataclass(frozen=True)
class Checkout:
    """Where to send the browser to pay (subscribe and recharge)."""

    checkout_url: str
    request_id: str | None = None


def canonical_amount(amount: Decimal) -> str:
    """The JSON number for ``amount``: plain digits, no exponent, no trailing zeros.

    Raises ``ValueError`` for a non-finite or negative amount.
    """
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a payable amount: {amount!r}")
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class GigaClient:
    """The billing API, server-side, with the account's secret key."""

    def __init__(self, base_url, api_key: str | None, *, session=None,
                 connect_timeout: float = 3.0, total_timeout: float = 8.0,
                 client_id: str | None = None, clock: Clock | None = None):
        #: the API's address, or a function giving it at the first call (the built-in
        #: sandbox starts serving only when something calls it)
        self._base_url = base_url
        self._api_key = api_key
        self.session = abortable_session(session)
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.client_id = client_id
        self.clock = clock or Clock()

    def __repr__(self):  # never print the key
        where = "(address on first call)" if callable(self._base_url) else self._base_url
        return f"GigaClient({where!r})"

    @property
    def base_url(self) -> str:
        url = self._base_url() if callable(self._base_url) else self._base_url
        return url.rstrip("/")

    @property
    def key_fingerprint(self) -> str:
        """A short digest naming this key's shared state; the key cannot be got back from it."""
        return hashlib.sha256((self._api_key or "").encode()).hexdigest()[:12]

    # -- the four endpoints -------------------------------------------------

    def get_billing(self, *, deadline: float | None = None) -> Billing:
        """``GET /api/billing``. Raises ``GigaError`` (``BadResponse`` if a field is off)."""
        data, rid = self._request("GET", "/api/billing", deadline=deadline)
        return parse_billing(data, rid)

    def list_plans(self, *, deadline: float | None = None) -> list[Plan]:
        """``GET /api/billing/plans``. Raises ``GigaError``."""
        data, rid = self._request("GET", "/api/billing/plans", deadline=deadline)
        return parse_plans(data, rid)

    def subscribe(self, plan_id: str, *, deadline: float | None = None) -> Checkout:
        """``POST /api/billing/subscribe``. Raises ``GigaError``; never retried here."""
        body = json.dumps({"planId": plan_id})
        data, rid = self._request("POST", "/api/billing/subscribe", body=body, deadline=deadline)
        return parse_checkout(data, rid)

    def recharge(self, amount: Decimal, *, deadline: float | None = None) -> Checkout:
        """``POST /api/billing/recharge`` with ``amount`` sent as a canonical number.

        Raises ``GigaError``; ``ValueError`` for a non-finite amount (a bug upstream of here).
        """
        body = '{"amount": %s}' % canonical_amount(amount)
        data, rid = self._request("POST", "/api/billing/recharge", body=body, deadline=deadline)
        return parse_checkout(data, rid)

    # -- transport ------------------------------------------------------------

    def _request(self, method, path, *, body=None, deadline=None):
        """Send one request and return ``(data, request_id)`` from a success envelope.

        The whole exchange -- connect, headers, body -- must finish before
        ``deadline`` (a ``clock.monotonic()`` value); a server that drips bytes
        cannot hold the caller past it. Raises ``GigaError``.
        """
        if deadline is None:
            deadline = self.clock.monotonic() + self.total_timeout
        headers = {"Accept": "application/json",
                   "User-Agent": "giga-billing-dashboard/0.1",
                   "X-Request-Id": str(uuid.uuid4())}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self.client_id:
            headers["X-Client-Id"] = self.client_id
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        status, resp_headers, raw = self._send_before(deadline, method, url, body, headers)
        return _unwrap(status, resp_headers, raw)

    def _send_before(self, deadline, method, url, body, headers):
        """Run the HTTP exchange, ended by ``deadline`` however slowly the server
        answers (see ``deadline.within``). Raises ``Timeout`` or ``ConnectionFailed``.
        """
        remaining = deadline - self.clock.monotonic()
        if remaining <= 0:
            raise Timeout("The billing service did not answer in time.", never_sent=True)
        timeout = (min(self.connect_timeout, remaining), max(remaining, 0.05))
        try:
            return within(deadline, self.clock, lambda: self._exchange(
                method, url, body, headers, timeout), name="giga-http")
        except DeadlinePassed:
            raise Timeout("The billing service did not answer in time.") from None

    def _exchange(self, method, url, body, headers, timeout):
        """One blocking exchange; returns ``(status, headers, body bytes)``."""
        try:
            resp = self.session.request(method, url, data=body, headers=headers,
                                        timeout=timeout, stream=True, allow_redirects=False)
            try:
                raw = resp.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
            finally:
                resp.close()
        except requests.exceptions.ConnectTimeout as exc:
            raise Timeout("The billing service could not be reached in time.",
                          never_sent=True) from exc
        except requests.exceptions.Timeout as exc:
            raise Timeout("The billing service did not answer in time.") from exc
        except requests.exceptions.ConnectionError as exc:
            refused = _is_refused(exc)
            msg = ("The billing service refused the connection." if refused
                   else "The connection to the billing service was lost.")
            raise ConnectionFailed(msg, never_sent=refused) from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailed("The billing service could not be reached.") from exc
        except Exception as exc:  # urllib3 protocol errors while reading the body
            raise ConnectionFailed("The connection to the billing service was lost.") from exc
        return resp.status_code, resp.headers, raw


def _is_refused(exc) -> bool:
    """True when the connection was never established, so nothing was sent."""
    seen = set()
    cur = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError):
            return True
        reason = getattr(cur, "reason", None)
        if isinstance(reason, NewConnectionError):
            return True
        nxt = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None
        cur = nxt or cur.__cause__ or cur.__context__
    return False


# -- envelopes ----------------------------------------------------------------

def _loads(raw: bytes):
    """Parse JSON with every non-integer number as ``Decimal`` (never float)."""
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_retry_after(value) -> int | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = str(value).strip()
    if value.isascii() and value.isdigit():
        return min(int(value), 3600)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, min(3600, int((when - datetime.now(timezone.utc)).total_seconds() + 0.999)))


def _unwrap(status, headers, raw):
    """Turn a raw answer into ``(data, request_id)`` or raise the matching ``GigaError``."""
    header_rid = headers.get("X-Request-Id")
    if len(raw) > MAX_BODY_BYTES:
        raise BadResponse("The billing service sent an answer far too large to be billing data.",
                          status=status, request_id=header_rid)
    try:
        doc = _loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if 200 <= status < 300:
        if not isinstance(doc, dict) or doc.get("success") is not True \
                or not isinstance(doc.get("data"), dict):
            raise BadResponse("The billing service sent an answer the dashboard cannot read.",
                              status=status, request_id=header_rid)
        return doc["data"], header_rid
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        err = {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    hint = err.get("hint") if isinstance(err.get("hint"), str) else None
    rid = err.get("requestId") if isinstance(err.get("requestId"), str) else header_rid
    if message is None:
        message = f"The billing service answered with HTTP {status}."
    raise GigaError.from_status(status, code, message[:500], hint=hint and hint[:500],
                                request_id=rid and rid[:100],
                                retry_after=parse_retry_after(headers.get("Retry-After")))


# -- typed results --------------------------------------------------------------

#: no account holds a billion credits: a figure beyond is a fault, not money
MAX_FIGURE = Decimal(10) ** 9
CENT = Decimal("0.01")


def _number(obj, key, rid, *, cents: bool) -> Decimal:
    """A finite number within ``MAX_FIGURE`` (and, with ``cents``, whole cents), checked
    here at parse time so that no page meets a figure it cannot format. Raises
    ``BadResponse``."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise BadResponse(f"The billing service sent no usable '{key}'.", request_id=rid)
    value = Decimal(value)
    if not value.is_finite() or abs(value) > MAX_FIGURE:
        raise BadResponse(f"The billing service sent an impossible '{key}'.", request_id=rid)
    if cents and value != value.quantize(CENT):
        raise BadResponse(f"The billing service sent a '{key}' finer than a cent.",
                          request_id=rid)
    return value


def _money(obj, key, rid) -> Decimal:
    """An amount of credits (one credit is one dollar): whole cents. Raises ``BadResponse``."""
    return _number(obj, key, rid, cents=True)


def _when(obj, key, rid) -> datetime:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadResponse(f"The billing service sent no usable '{key}'.", request_id=rid)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadResponse(f"The billing service sent no usable '{key}'.", request_id=rid) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


def _text(obj, key, rid) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise BadResponse(f"The billing service sent no usable '{key}'.", request_id=rid)
    return value


def _amount_or_word(obj, key, rid, *, cents=False) -> Decimal | str:
    value = obj.get(key)
    if isinstance(value, str) and value.strip() and len(value) <= 40:
        return value.strip().lower()
    return _number(obj, key, rid, cents=cents)


def contract_json(doc) -> str:
    """JSON text as the API writes it: a ``Decimal`` is a number with all its digits
    (``json`` cannot write one, and a float would round it)."""
    if isinstance(doc, Decimal):
        return format(doc, "f")
    if isinstance(doc, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{contract_json(v)}"
                              for k, v in doc.items()) + "}"
    if isinstance(doc, (list, tuple)):
        return "[" + ",".join(contract_json(v) for v in doc) + "]"
    return json.dumps(doc)


def billing_document(billing: Billing) -> dict:
    """``billing`` as ``GET /api/billing``'s ``data`` (what ``parse_billing`` reads)."""
    return {"billing": {"plan": billing.plan,
                        "planCreditsRemaining": billing.plan_credits_remaining,
                        "prepaidBalance": billing.prepaid_balance,
                        "totalBalance": billing.total_balance,
                        "currentPeriodStart": billing.period_start.isoformat(),
                        "currentPeriodEnd": billing.period_end.isoformat()}}


def plans_document(plans: list[Plan]) -> dict:
    """``plans`` as ``GET /api/billing/plans``'s ``data`` (what ``parse_plans`` reads)."""
    return {"plans": [{"id": p.id, "name": p.name, "monthlyCredits": p.monthly_credits,
                       "concurrentAgents": p.concurrent_agents,
                       "maxDurationHours": p.max_duration_hours, "price": p.price}
                      for p in plans]}


def parse_billing(data, rid=None) -> Billing:
    """``Billing`` from the ``data`` of ``GET /api/billing``. Raises ``BadResponse``."""
    billing = data.get("billing")
    if not isinstance(billing, dict):
        raise BadResponse("The billing service sent no billing figures.", request_id=rid)
    start = _when(billing, "currentPeriodStart", rid)
    end = _when(billing, "currentPeriodEnd", rid)
    if end <= start:
        raise BadResponse("The billing service sent a period that ends before it starts.",
                          request_id=rid)
    return Billing(
        plan=_text(billing, "plan", rid),
        plan_credits_remaining=_money(billing, "planCreditsRemaining", rid),
        prepaid_balance=_money(billing, "prepaidBalance", rid),
        total_balance=_money(billing, "totalBalance", rid),
        period_start=start,
        period_end=end,
    )


def parse_plans(data, rid=None) -> list[Plan]:
    """``Plan`` list from the ``data`` of ``GET /api/billing/plans``. Raises ``BadResponse``."""
    plans = data.get("plans")
    if not isinstance(plans, list) or not plans or len(plans) > 100:
        raise BadResponse("The billing service sent no list of plans.", request_id=rid)
    out = []
    for item in plans:
        if not isinstance(item, dict):
            raise BadResponse("The billing service sent a plan the dashboard cannot read.",
                              request_id=rid)
        out.append(Plan(
            id=_text(item, "id", rid),
            name=_text(item, "name", rid),
            monthly_credits=_amount_or_word(item, "monthlyCredits", rid, cents=True),
            concurrent_agents=_amount_or_word(item, "concurrentAgents", rid),
            max_duration_hours=_amount_or_word(item, "maxDurationHours", rid),
            price=_amount_or_word(item, "price", rid, cents=True),
        ))
    return out


def parse_checkout(data, rid=None) -> Checkout:
    """``Checkout`` from a subscribe/recharge answer. Raises ``BadResponse``."""
    url = data.get("checkoutUrl")
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise BadResponse("The billing service did not say where to pay.", request_id=rid)
    return Checkout(checkout_url=url, request_id=rid)
