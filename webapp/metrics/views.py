"""``/metrics`` in the Prometheus text format, for the whole deployment.

Figures come from what every process shares -- the database (balances,
alerts) and the gateway's store (upstream calls, cache, budget, breaker) --
so a scrape of any one process shows the deployment's numbers. Readable only
with ``METRICS_TOKEN`` as a bearer token; without that setting it is 404.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from ..extensions import csrf, db
from ..services.history.readings import latest
from ..models import Alert, AlertDelivery

bp = Blueprint("metrics", __name__)

#: wrong tokens one address may send in a minute before its wrong ones get a 429
WRONG_TOKENS_PER_MINUTE = 10


class DeploymentCollector:
    """Collects at scrape time; nothing is kept in this process."""

    def collect(self):
        snapshot = latest()
        if snapshot is not None:
            balance = GaugeMetricFamily("giga_balance_usd", "Latest balance read, in USD",
                                        labels=["kind"])
            for kind, value in (("plan_credits", snapshot.plan_credits_remaining),
                                ("prepaid", snapshot.prepaid_balance),
                                ("total", snapshot.total_balance)):
                balance.add_metric([kind], float(value))  # the exposition format is float
            yield balance
            yield GaugeMetricFamily("giga_period_start_timestamp_seconds",
                                    "Start of the current billing period",
                                    value=snapshot.period_start.timestamp())
            yield GaugeMetricFamily("giga_period_end_timestamp_seconds",
                                    "End of the current billing period",
                                    value=snapshot.period_end.timestamp())
            yield GaugeMetricFamily("giga_balance_read_timestamp_seconds",
                                    "When the balance was last read",
                                    value=snapshot.last_seen_at.timestamp())
        gateway = current_app.extensions["giga_gateway"]
        reachable = gateway.store_reachable()
        yield GaugeMetricFamily("giga_shared_store_up",
                                "1 when the store the processes share (Redis) answers; 0 while "
                                "each works from its own copy (always 1 without REDIS_URL)",
                                value=1 if reachable else 0)
        if reachable:  # else this process's own fallback figures would read as a reset
            yield from self._upstream(gateway.stats())
        sent = db.session.execute(select(AlertDelivery.channel, func.count()).where(
            AlertDelivery.status == "sent").group_by(AlertDelivery.channel)).all()
        delivered = CounterMetricFamily("giga_alert_deliveries_sent",
                                        "Alert deliveries sent, by channel", labels=["channel"])
        for channel in ("email", "webhook"):
            delivered.add_metric([channel], dict(sent).get(channel, 0))
        yield delivered
        yield CounterMetricFamily("giga_alerts_fired", "Alerts fired (tests included)",
                                  value=db.session.scalar(select(func.count(Alert.id))))

    @staticmethod
    def _upstream(stats):
        """The deployment's upstream figures, from the shared store."""
        calls = CounterMetricFamily("giga_upstream_calls", "Calls to the billing API by outcome",
                                    labels=["outcome"])
        for outcome, n in stats["calls"].items():
            calls.add_metric([outcome], n)
        yield calls
        cache = CounterMetricFamily("giga_cache_requests", "Reads answered from the cache",
                                    labels=["result"])
        for result, n in stats["cache"].items():
            cache.add_metric([result], n)
        yield cache
        yield GaugeMetricFamily("giga_upstream_budget_remaining",
                                "Calls left in the dashboard's budget this minute",
                                value=stats["budget_left"])
        breaker = GaugeMetricFamily("giga_breaker_state", "1 for the breaker's current state",
                                    labels=["state"])
        for state in ("closed", "half-open", "open"):
            breaker.add_metric([state], 1 if stats["breaker"] == state else 0)
        yield breaker


@bp.get("/metrics")
@csrf.exempt
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _wrong_token()
    registry = CollectorRegistry()
    registry.register(DeploymentCollector())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _wrong_token():
    """A 401, or a 429 past ``WRONG_TOKENS_PER_MINUTE`` from this address this minute.

    Only wrong tokens are counted and refused: the right one is checked first, so
    nobody sending wrong ones from the scraper's address (a shared NAT, or a forged
    ``X-Forwarded-For``) can lock the scraper out. So the count does not slow a
    guesser down (a right guess is answered whatever it says), and need not: the
    token is at least 32 random characters (the settings refuse a weaker one),
    beyond guessing at any rate. It tells a misconfigured scraper or a scanner to
    stop, with a ``Retry-After``.
    """
    store = current_app.extensions["giga_store"]
    taken, _ = store.take(f"metrics-refused:{request.remote_addr}", WRONG_TOKENS_PER_MINUTE, 60)
    if not taken:
        return Response("Too many wrong tokens from this address; wait a minute.\n", 429,
                        {"Retry-After": "60"}, mimetype="text/plain")
    return Response("A bearer token is needed.\n", 401,
                    {"WWW-Authenticate": 'Bearer realm="metrics"'}, mimetype="text/plain")
