"""The one place that names workflow IDs and the task queue.

IDs are business keys, so the same event always reaches the same journey and a
start is naturally deduplicated by Temporal. They carry customer ids, which are
opaque shop ids, never e-mail addresses.
"""

from __future__ import annotations

DEFAULT_TASK_QUEUE = "triggermail"


def email_task_queue(task_queue: str) -> str:
    """The send activities' own queue beside a journeys' queue.

    Kept apart so one ``max_task_queue_activities_per_second`` holds the SendGrid plan's
    rate across every worker, without slowing the journeys' own workflow tasks.
    """
    return f"{task_queue}-email"


def abandoned_cart_id(customer_id: str) -> str:
    """One abandoned-cart journey per customer at a time: their latest cart."""
    return f"abandoned-cart/{customer_id}"


def welcome_id(customer_id: str) -> str:
    """One welcome per customer, ever: the start refuses this ID once it has been used."""
    return f"welcome/{customer_id}"


def browse_abandonment_id(customer_id: str) -> str:
    """One browse abandonment per customer at a time: the views of one visit."""
    return f"browse-abandonment/{customer_id}"


def post_purchase_id(order_id: str) -> str:
    """One post-purchase journey per order, ever."""
    return f"post-purchase/{order_id}"


def review_request_id(order_id: str) -> str:
    """One review request per order, ever."""
    return f"review-request/{order_id}"


def replenishment_id(customer_id: str, key: str) -> str:
    """One replenishment per customer and product (or ``category:<name>``): a repurchase
    restarts its cycle."""
    return f"replenishment/{customer_id}/{key}"


def reactivation_id(customer_id: str, last_order_day: str) -> str:
    """One reactivation per lapse: keyed by the day of the order the lapse counts from, so
    any sweep that finds the same lapse finds the same ID."""
    return f"reactivation/{customer_id}/{last_order_day}"


def win_back_id(customer_id: str, last_order_day: str) -> str:
    """One win-back per lapse, keyed like the reactivation."""
    return f"win-back/{customer_id}/{last_order_day}"


def birthday_id(customer_id: str, year: int) -> str:
    """One birthday greeting per customer per year."""
    return f"birthday/{customer_id}/{year}"


def anniversary_id(customer_id: str, year: int) -> str:
    """One first-order anniversary per customer per year."""
    return f"anniversary/{customer_id}/{year}"


def sweep_id(day: str) -> str:
    """One sweep per day: running it twice finds the first."""
    return f"sweep/{day}"
