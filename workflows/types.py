"""The dataclasses that cross the workflow boundary.

They carry IDs and timings only — never e-mail addresses, names or bodies — and
new fields are only ever added with defaults, so histories of running journeys
still decode after a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Re-exported: every journey's input carries one, and workflow code imports its types here.
from triggermail.specs import JourneySpec as JourneySpec
from triggermail.specs import StepSpec as StepSpec

SEND_EMAIL_ACTIVITY = "send_email"
"""The guarded send (``activities.email``), called by name: workflow code never imports
the activities, whose SQLAlchemy, Jinja2 and SendGrid stay out of the sandbox."""
SUNSET_AFTER_ACTIVITY = "sunset_after"
"""Win-back: seconds of grace after the farewell (``activities.lapsed``)."""
SUNSET_ACTIVITY = "sunset"
"""Win-back: sunset the customer unless they reacted (``activities.lapsed``)."""


@dataclass
class AbandonedCartInput:
    """Start of one customer's abandoned-cart journey."""

    customer_id: str
    cart_id: str
    entered_at: datetime
    """When the cart activity that opened the journey happened (the event's timestamp)."""
    entry_event_id: str
    """``messageId`` of that event; keys the journey's sends so a later journey sends anew."""
    spec: JourneySpec
    timezone: str | None = None
    """The customer's IANA timezone at entry, to show operators local send times."""


@dataclass
class WelcomeInput:
    """Start of one customer's welcome journey: at most one per customer, ever."""

    customer_id: str
    entered_at: datetime
    """When the sign-up or consenting ``identify`` happened (the event's timestamp)."""
    entry_event_id: str
    """``messageId`` of that event; keys the journey's sends."""
    spec: JourneySpec
    timezone: str | None = None
    """The customer's IANA timezone at entry, to show operators local send times."""


@dataclass
class BrowseAbandonmentInput:
    """Start of one customer's browse abandonment: products viewed, none added."""

    customer_id: str
    entered_at: datetime
    """When the first view of this visit happened."""
    entry_event_id: str
    spec: JourneySpec
    window_s: float
    """Views this long before the latest are forgotten."""
    timezone: str | None = None


@dataclass(frozen=True)
class ProductView:
    """Signal: the customer viewed a product (also the start signal)."""

    product_id: str
    at: datetime


@dataclass
class PostPurchaseInput:
    """Start of one order's post-purchase journey: one per order."""

    customer_id: str
    order_id: str
    entered_at: datetime
    """When the order was placed."""
    entry_event_id: str
    spec: JourneySpec
    timezone: str | None = None


@dataclass
class ReviewRequestInput:
    """Start of one order's review request: one per order."""

    customer_id: str
    order_id: str
    entered_at: datetime
    """When the event that started it happened (the order, or its delivery)."""
    entry_event_id: str
    spec: JourneySpec
    timezone: str | None = None
    expected_delivery_at: datetime | None = None
    """For shops without ``Order Delivered``: when the order is assumed to arrive. None:
    the journey waits for the ``delivered`` signal."""


@dataclass(frozen=True)
class OrderDelivered:
    """Signal: the order arrived (also the start signal)."""

    at: datetime


@dataclass
class ReplenishmentInput:
    """Start of one customer's replenishment of one product (or category)."""

    customer_id: str
    key: str
    """What a repurchase is matched on: the product id, or ``category:<name>``."""
    product_id: str
    order_id: str
    entered_at: datetime
    """When the order was placed."""
    entry_event_id: str
    due_at: datetime
    """Order time + the product's cycle - the lead time: the first step counts from here."""
    spec: JourneySpec
    timezone: str | None = None


@dataclass(frozen=True)
class Repurchase:
    """Signal: the customer bought the product again; its cycle starts over from this order
    (also the start signal)."""

    order_id: str
    product_id: str
    at: datetime
    event_id: str
    due_at: datetime


@dataclass
class LapsedInput:
    """Start of a reactivation or win-back: the daily sweep found the customer lapsed."""

    customer_id: str
    entered_at: datetime
    """When the sweep started it."""
    entry_key: str
    """The day of the last order the lapse counts from (``YYYY-MM-DD``): keys the sends."""
    spec: JourneySpec
    segment: str
    """``vip``, ``repeat`` or ``one_time``, computed at entry (recorded in journey_entries)."""
    last_order_at: datetime
    timezone: str | None = None


@dataclass
class OccasionInput:
    """Start of a birthday greeting or a first-order anniversary thank-you."""

    customer_id: str
    occasion: str
    """``birthday`` or ``anniversary``."""
    day: str
    """The day it is kept (``YYYY-MM-DD``, in the customer's timezone)."""
    send_at: datetime
    """``[birthday] send_at`` on that day in the customer's timezone, as UTC."""
    spec: JourneySpec
    years: int | None = None
    """Anniversary: years since the first order."""
    timezone: str | None = None


@dataclass(frozen=True)
class CartActivity:
    """Signal: the customer changed the cart (the quiet window starts again)."""

    cart_id: str
    at: datetime


@dataclass(frozen=True)
class JourneyExit:
    """Signal: the journey is no longer needed."""

    reason: str
    """``purchase``, ``cart_emptied``, ``carted``, ``order_refunded``, ``order_cancelled``,
    ``reviewed``, ``unsubscribed`` or ``cancelled`` (an operator)."""
    at: datetime
    ref: str | None = None
    """The business id behind it (an order id), for the record."""
    note: str | None = None
    """An operator's reason, for ``cancelled``."""


@dataclass(frozen=True)
class SentEmail:
    """One step's send as the journey saw it (the ledger has the rest)."""

    step: str
    status: str
    send_id: str
    at: datetime


@dataclass
class JourneyStatus:
    """What the ``status`` query returns: where a journey stands."""

    journey: str
    customer_id: str
    state: str
    """``waiting``, ``sending`` or ``ended``."""
    next_step: str | None = None
    next_send_at: datetime | None = None
    sent: list[str] = field(default_factory=list)
    exit_reason: str | None = None
    waiting_for: str | None = None
    """What the current wait is raced against (``a purchase``)."""
    entered_at: datetime | None = None
    timezone: str | None = None
    next_send_local: str | None = None
    """``next_send_at`` in UTC and in the customer's timezone."""
    emails: list[SentEmail] = field(default_factory=list)
    exit_note: str | None = None


@dataclass
class JourneyResult:
    """What a finished journey returns."""

    exit_reason: str
    """Why it ended: an exit signal's reason, a guard's reason, or ``completed``."""
    sent: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SendEmailInput:
    """One step's e-mail to send; the activity looks everything else up."""

    idempotency_key: str
    customer_id: str
    journey: str
    step: StepSpec
    workflow_id: str
    entered_at: datetime
    """Orders placed at or after this moment mean the customer has converted."""
    cart_id: str | None = None
    variant: str = "control"
    may_defer: bool = False
    """The journey can wait for the frequency cap or quiet hours (answer ``deferred``).
    Journeys that predate guardrails cannot, and their e-mails go as before."""
    ends_on_purchase: bool = True
    """An order placed since entry stops the e-mail (``converted``). A welcome is not
    about a purchase, so a customer who buys still gets the rest of it."""
    order_id: str | None = None
    """The order the e-mail is about (post-purchase, review request, replenishment)."""
    product_ids: list[str] = field(default_factory=list)
    """The products the e-mail is about (viewed, to reorder), most relevant first."""
    segment: str | None = None
    """Lapsed-customer journeys: the customer's segment at entry (``vip``, ``repeat``,
    ``one_time``), whose offer the e-mail makes."""
    send_on: str | None = None
    """The day the e-mail is for (``YYYY-MM-DD`` in the customer's timezone, the shop's
    when unknown): a birthday greeting. It is skipped (``too_late``) rather than sent, or
    held by the cap or quiet hours, past the end of that day."""


@dataclass(frozen=True)
class SendResult:
    """Outcome of a send: ids and a status, never the e-mail itself."""

    status: str
    """``sent``, ``skipped`` (a guard stopped it), ``failed`` (permanent error),
    ``unknown`` (the provider may have taken it; never sent twice), or ``deferred``
    (ask again at ``not_before``)."""
    send_id: str
    reason: str | None = None
    """For ``skipped``/``failed``: ``converted``, ``cart_emptied``, ``no_consent``,
    ``unsubscribed``, ``bounced``, ``capped``, the error; for ``deferred``:
    ``frequency_cap`` or ``quiet_hours``."""
    not_before: datetime | None = None
    """For ``deferred``: the first moment the e-mail may go."""


@dataclass(frozen=True)
class SunsetInput:
    """A win-back's farewell has gone and its grace is over: sunset the customer unless
    they reacted to the journey's e-mails."""

    customer_id: str
    journey: str
    workflow_id: str
    """The journey whose e-mails' opens and clicks count as a reaction."""
    entered_at: datetime
    """Orders and e-mails from then on count."""
    send_id: str
    """The farewell: recorded on the suppression as what led to it."""


@dataclass(frozen=True)
class SunsetResult:
    sunset: bool
    """The customer is sunset (now, or was already)."""
    reason: str
    """``no_reaction`` (sunset now), how they reacted (``order``, ``click``, ``open``), or
    the suppression they already had (``unsubscribed``…)."""
