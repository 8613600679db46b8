"""Raw Temporal, the yardstick for the journey benchmarks: a workflow that sleeps until its
due time and runs one no-op activity, and a worker process for it built like ours
(a thread pool of the same size and a workflow cache of the same size, one process).

    .venv/bin/python bench/raw_worker.py   # TEMPORAL_ADDRESS, RAW_TASK_QUEUE
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

THREADS = 16
"""Our worker's default activity threads (``TRIGGERMAIL_ACTIVITY_THREADS``)."""
CACHE = 10_000
"""Our worker's default workflow cache (``TRIGGERMAIL_WORKFLOW_CACHE``). With Temporal's
default of 1,000, raw replays most of a burst of more from history on waking and drains
at half its speed, which flattered our ratio at 2,000 (0.68 against 0.49 at 500)."""


@activity.defn
def noop(value: str) -> str:
    return value


@workflow.defn
class RawJourney:
    """Sleep until ``due`` (Unix seconds), then one activity: a journey's send, minus the e-mail."""

    @workflow.run
    async def run(self, due: float) -> None:
        remaining = due - workflow.now().timestamp()
        if remaining > 0:
            await workflow.sleep(remaining)
        await workflow.execute_activity(noop, "x", start_to_close_timeout=timedelta(seconds=60))


async def main() -> None:
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    queue = os.environ["RAW_TASK_QUEUE"]
    with ThreadPoolExecutor(THREADS) as executor:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[RawJourney],
            activities=[noop],
            activity_executor=executor,
            max_concurrent_activities=THREADS,
            max_cached_workflows=CACHE,
        )
        logging.getLogger("bench").warning("raw worker polling task queue %r", queue)
        await worker.run()


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(message)s")
    asyncio.run(main())
