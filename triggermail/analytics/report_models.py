"""The report's shape: the pydantic models ``build_report`` returns.

Its JSON is these models, and its schema is ``Report.model_json_schema()``. They are
apart from the counting (:mod:`triggermail.analytics.report`) and the display
(:mod:`triggermail.analytics.report_display`) because both read them, and a consumer of
the JSON needs neither the store nor the charts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from triggermail.variants import HOLDOUT as HOLDOUT  # a journey's holdout row: never mailed

FUNNEL = ("entered", "sent", "delivered", "opened", "clicked", "converted")
"""The funnel's stages, in order."""


class Interval(BaseModel):
    low: float
    high: float


class Row(BaseModel):
    """One journey's figures, one of its steps', or one step and variant's."""

    journey: str
    step: str | None = Field(description="None: the journey as a whole.")
    variant: str | None = Field(description="None: every variant; 'holdout': the holdout.")
    entered: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int
    conversion_rate: float | None = Field(description="converted / entered; None when 0 entered.")
    conversion_ci: Interval | None = Field(description="95 % Wilson score interval of the rate.")
    attributed_orders: int
    revenue: dict[str, str] = Field(
        description="Attributed revenue by ISO currency, as decimal strings ('1234.50')."
    )
    unsubscribed: int
    lift: float | None = Field(
        description="Rate over the holdout's rate, minus one; None without a holdout."
    )


class Recovery(BaseModel):
    """Abandoned carts only."""

    carts_entered: int
    carts_recovered: int
    rate: float | None
    ci: Interval | None


class Funnel(BaseModel):
    """Mailed entries, each counted once at every stage it reached (any of its e-mails)."""

    entered: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int


class JourneyReport(BaseModel):
    journey: str
    total: Row = Field(description="Mailed entries (the holdout apart).")
    funnel: Funnel
    holdout: Row | None = Field(description="Entries never mailed; None when there are none.")
    steps: list[Row] = Field(description="Per step and variant, in the journey's order.")
    recovery: Recovery | None = None


class Retention(BaseModel):
    previous_since: datetime
    previous_until: datetime
    previous_customers: int = Field(description="Customers with an order in the previous period.")
    returning_customers: int = Field(description="…of whom ordered again in this period.")
    rate: float | None
    ci: Interval | None


class Orders(BaseModel):
    """Every completed order of the period, attributed or not."""

    orders: int
    revenue: dict[str, str]
    attributed_orders: int
    attributed_revenue: dict[str, str]


class Windows(BaseModel):
    click_window_s: float
    open_window_s: float
    open_tracking: bool


class Report(BaseModel):
    schema_version: Literal[1] = 1
    generated_at: datetime
    since: datetime
    until: datetime
    attribution: Windows
    journeys: list[JourneyReport]
    orders: Orders
    retention: Retention
