"""History events per complete journey, per journey type: what each journey costs Temporal.

The same stack as ``bench/lateness.py``, second-scale timings (cart reminder 8 s after the
last change, incentive 2 s later; welcome at once, then 2 s and 2 s). Scenarios: a cart
left behind to the end (two e-mails), a cart bought after the reminder, a welcome to the
end (three e-mails), and carts changed 1, 10 and 50 times inside the quiet window (each
change restarts the reminder's timer), from which the events one cart change adds.

    .venv/bin/python bench/history.py [--quick]

Last line: ``RESULT abandoned_cart=… abandoned_cart_bought=… welcome=… per_cart_change=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from loadkit import customer_events, stack_with_raw

from tests.faults.stack import Stack, post_batch, until
from triggermail.ids import abandoned_cart_id, welcome_id
from triggermail.store import EmailSend, make_engine


def added(customer: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Added",
        "userId": customer,
        "messageId": f"{customer}-add-{n}",
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {
            "product_id": f"p-{n}",
            "name": "Socks",
            "price": 5,
            "cart_id": f"{customer}-k",
        },
    }


async def events_of(stack: Stack, workflow_id: str) -> int:
    handle = stack.client.get_workflow_handle(workflow_id)
    await handle.result()
    return len((await handle.fetch_history()).events)


def reminded(stack: Stack, customer: str) -> bool:
    engine = make_engine(stack.database_url)
    with engine.connect() as conn:
        status = conn.scalar(
            sa.select(EmailSend.status).where(
                EmailSend.customer_id == customer, EmailSend.step == "reminder"
            )
        )
    engine.dispose()
    return status == "sent"


async def send(stack: Stack, events: list[dict[str, Any]]) -> None:
    assert await post_batch(stack.http, events) == 200


async def bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        options = {"reminder": "8s", "incentive": "2s", "welcome": ["0s", "2s", "2s"]}
        async with stack_with_raw(Path(folder), **options) as (stack, _):
            run = uuid.uuid4().hex[:6]
            left, bought = f"{run}-left", f"{run}-bought"
            changed = {k: f"{run}-changed{k}" for k in (1, 10, 50)}
            now = datetime.now(UTC)
            for customer in (left, bought, *changed.values()):
                await send(stack, customer_events(customer, now))
            for k, customer in changed.items():
                # The first Product Added was the entry; k - 1 more changes inside the window.
                for n in range(1, k):
                    await send(stack, [added(customer, n)])
            await until(lambda: reminded(stack, bought), timeout=60)
            order = {
                "type": "track",
                "event": "Order Completed",
                "userId": bought,
                "messageId": f"{bought}-order",
                "properties": {"order_id": f"{bought}-o", "total": 24.9, "cart_id": f"{bought}-k"},
            }
            await send(stack, [order])
            counts: dict[str, float] = {
                "abandoned_cart": await events_of(stack, abandoned_cart_id(left)),
                "abandoned_cart_bought": await events_of(stack, abandoned_cart_id(bought)),
                "welcome": await events_of(stack, welcome_id(left)),
            }
            changes = {k: await events_of(stack, abandoned_cart_id(c)) for k, c in changed.items()}
    print(f"cart changed k times before the reminder (k: events): {changes}")
    counts["per_cart_change"] = (changes[50] - changes[1]) / 49
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same: it takes ~1 min")
    parser.parse_args()
    counts = asyncio.run(bench())
    print("RESULT " + " ".join(f"{k}={v:g}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
