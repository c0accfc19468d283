"""What the billing page shows, assembled from the two upstream reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from decimal import Decimal

from flask import current_app

from ..clock import app_clock
from ..gateway import BillingGateway
from ..giga import Billing, GigaError, Plan
from .forecast import Forecast, account_forecast
from .zone import display_zone


def gateway() -> BillingGateway:
    return current_app.extensions["giga_gateway"]


def plan_names() -> dict[str, str]:
    """Plan id to name, from the plans last read (never calls upstream)."""
    return gateway().plan_names()


def known_plans() -> list[Plan] | None:
    """The plans last read, or ``None`` (never calls upstream)."""
    return gateway().known_plans()


def deadline() -> float:
    """The limit for this page's upstream calls, well under a worker's timeout."""
    return app_clock().monotonic() + current_app.config["UPSTREAM_DEADLINE"]


@dataclass
class Overview:
    billing: Billing
    fetched_at: datetime
    stale_error: Exception | None
    now: datetime
    plans: list[Plan] = field(default_factory=list)
    plans_error: Exception | None = None
    current_plan: Plan | None = None

    @property
    def known_plans(self) -> list[Plan] | None:
        """The plan list, or ``None`` when it could not be read."""
        return None if self.plans_error is not None else self.plans

    @cached_property
    def forecast(self) -> Forecast | None:
        """The forecast the alerts say too; ``None`` without the plan list."""
        return account_forecast(self.billing, self.known_plans, self.now,
                                read_at=self.fetched_at, zone=display_zone())

    @property
    def stale(self) -> bool:
        return self.stale_error is not None

    @property
    def gauge_max(self) -> Decimal | None:
        """The plan's monthly credits, or None when custom or unknown (no invented denominator)."""
        plan = self.current_plan
        if plan is None or isinstance(plan.monthly_credits, str) or plan.monthly_credits <= 0:
            return None
        return plan.monthly_credits

    @property
    def gauge_percent(self) -> int | None:
        if self.gauge_max is None:
            return None
        share = self.billing.plan_credits_remaining / self.gauge_max * 100
        return int(max(Decimal(0), min(Decimal(100), share)).to_integral_value())

    def direction(self, plan: Plan) -> str:
        """"upgrade", "downgrade" or "change" from the current plan to ``plan``."""
        return plan_direction(self.current_plan, plan)


def plan_direction(current: Plan | None, target: Plan) -> str:
    if current is None or isinstance(current.price, str) or isinstance(target.price, str):
        return "change"
    if target.price != current.price:
        return "upgrade" if target.price > current.price else "downgrade"
    a, b = current.monthly_credits, target.monthly_credits
    if isinstance(a, str) or isinstance(b, str) or a == b:
        return "change"
    return "upgrade" if b > a else "downgrade"


def load_overview(*, fresh=False) -> Overview:
    """Read billing and plans together.

    Raises ``GigaError`` or ``Declined`` when billing cannot be shown.
    """
    billing, plans = gateway().balance_and_plans(deadline(), fresh_billing=fresh)
    if isinstance(billing, GigaError):
        raise billing
    overview = Overview(billing=billing.value, fetched_at=billing.fetched_at,
                        stale_error=billing.error if billing.stale else None,
                        now=app_clock().now())
    if isinstance(plans, GigaError):
        overview.plans_error = plans
    else:
        overview.plans = plans.value
        overview.current_plan = next((p for p in plans.value if p.id == billing.value.plan), None)
    return overview
