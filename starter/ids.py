"""The one place that names workflow IDs and the task queue.

IDs are business keys, so the same event always reaches the same journey and a
start is naturally deduplicated by Temporal. They carry customer ids, which are
opaque shop ids, never e-mail addresses.
"""

from __future__ import annotations

DEFAULT_TASK_QUEUE = "triggermail"


def abandoned_cart_id(customer_id: str) -> str:
    """One abandoned-cart journey per customer at a time: their latest cart."""
    return f"abandoned-cart/{customer_id}"
