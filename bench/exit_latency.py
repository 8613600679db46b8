"""Purchase exit: ``Order Completed`` accepted by the HTTP intake → the journey closed.

The same stack as ``bench/lateness.py``. N customers leave carts (reminder due in an
hour), then each buys, one ``POST /v1/track`` at a time, a few customers in flight. For
each: the time the intake answered 200 (the event stored and the journey signalled) to
the journey's close time in Temporal. A journey closing before the 200 reached the client
counts as 0.

    .venv/bin/python bench/exit_latency.py [--quick] [--journeys N]

Last line: ``RESULT p50_s=… p99_s=… max_s=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from loadkit import enter, percentile, stack_with_raw

from tests.faults.stack import WRITE_KEY, Stack
from triggermail.ids import abandoned_cart_id

IN_FLIGHT = 4


async def buy(stack: Stack, customer: str) -> float:
    """Seconds from the intake's 200 to the journey's close."""
    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": customer,
        "messageId": f"{customer}-order",
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {
            "order_id": f"{customer}-o",
            "cart_id": f"{customer}-k",
            "total": 24.9,
            "currency": "EUR",
            "products": [{"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}],
        },
    }
    response = await stack.http.post("/v1/track", json=order, auth=(WRITE_KEY, ""))
    accepted = time.time()
    assert response.status_code == 200, response.text
    handle = stack.client.get_workflow_handle(abandoned_cart_id(customer))
    await handle.result()
    closed = (await handle.describe()).close_time
    assert closed is not None
    return max(0.0, closed.timestamp() - accepted)


async def bench(journeys: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        async with stack_with_raw(Path(folder), reminder="1h", incentive=None) as (stack, _):
            run = uuid.uuid4().hex[:6]
            customers = [f"{run}-c{i}" for i in range(journeys)]
            await enter(stack, dict.fromkeys(customers, datetime.now(UTC)))
            await asyncio.sleep(2)  # every journey asleep on its timer
            limit = asyncio.Semaphore(IN_FLIGHT)

            async def one(customer: str) -> float:
                async with limit:
                    return await buy(stack, customer)

            latencies = await asyncio.gather(*(one(c) for c in customers))
            result = stack.tally("exit", customers)
            assert result.sent == 0 and result.requests == 0, result  # buyers get no e-mail
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 journeys")
    parser.add_argument("--journeys", type=int, default=1000)
    args = parser.parse_args()
    journeys = 100 if args.quick else args.journeys
    latencies = asyncio.run(bench(journeys))
    print(f"{journeys} purchases, {IN_FLIGHT} in flight")
    print(
        f"RESULT p50_s={percentile(latencies, 50):.3f} p99_s={percentile(latencies, 99):.3f} "
        f"max_s={latencies[-1]:.3f}"
    )


if __name__ == "__main__":
    main()
