"""More load, more worker processes: two workers share the sends, and the SendGrid plan's
rate (``TRIGGERMAIL_SENDS_PER_SECOND``) holds for both together, enforced by Temporal on
the send task queue."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.faults.conftest import record
from tests.faults.stack import Stack
from triggermail.ids import abandoned_cart_id

pytestmark = pytest.mark.faults

RATE = 4.0


async def send_workers(client: Client, customers: list[str]) -> Counter[str]:
    """How many sends each worker process ran (the identity on each started activity)."""
    counts: Counter[str] = Counter()
    for customer in customers:
        history = await client.get_workflow_handle(abandoned_cart_id(customer)).fetch_history()
        for event in history.events:
            if event.HasField("activity_task_started_event_attributes"):
                counts[event.activity_task_started_event_attributes.identity] += 1
    return counts


async def test_two_workers_share_sends_under_one_rate_limit(tmp_path: Path) -> None:
    stack = Stack(tmp_path, workers=2, sends_per_second=RATE, reminder="4s", incentive="1s")
    async with stack:
        customers = await stack.enter("scale", 30)
        await stack.finish(customers, timeout=180)
        result = stack.tally(f"2 workers, limit {RATE:g} sends/s", customers)
        by_worker = await send_workers(stack.client, customers)
    times = sorted(entry.at for entry in stack.sendgrid.log)
    per_s = (len(times) - 1) / (times[-1] - times[0])
    busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    # Temporal's limiter lets about a second's worth through at once after an idle spell;
    # the limit is what holds after that.
    settled = [t for t in times if t >= times[0] + 1]
    settled_per_s = (len(settled) - 1) / (settled[-1] - settled[0])
    shares = "/".join(str(n) for n in sorted(by_worker.values(), reverse=True))
    result.note = (
        f"{per_s:.2f} sends/s overall, {settled_per_s:.2f} after the first second, "
        f"busiest second {busiest}, split {shares}"
    )
    record(result)
    assert result.duplicates == 0 and result.lost == 0, result
    assert settled_per_s <= RATE * 1.1, result.note
    assert len(by_worker) == 2, by_worker
    assert min(by_worker.values()) >= 0.2 * sum(by_worker.values()), by_worker
