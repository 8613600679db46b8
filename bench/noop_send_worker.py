"""Our journeys with the send activity replaced by a no-op: what the journeys themselves cost
Temporal and the worker, the e-mail left out. ``bench/e2e.py`` runs it between ours and raw's
second run, so the gap to raw splits into the journey's share and the send path's.

Built as ``worker.py`` builds ours (every journey workflow, the journeys' queue and the send
queue, the same activity threads and workflow cache); only ``send_email`` answers "sent" at
once, without the store, the template or SendGrid.

    .venv/bin/python bench/noop_send_worker.py   # the worker's TEMPORAL_* / TRIGGERMAIL_* env
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import activity
from temporalio.worker import Worker

from triggermail.ids import email_task_queue
from triggermail.settings import Settings
from triggermail.temporal import connect
from worker import WORKFLOWS, Workers
from workflows.types import SendEmailInput, SendResult


@activity.defn(name="send_email")
def send_email(request: SendEmailInput) -> SendResult:
    return SendResult(status="sent", send_id=request.idempotency_key)


async def main() -> None:
    settings = Settings()
    client = await connect()
    with ThreadPoolExecutor(settings.activity_threads) as executor:
        workers = Workers(
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=WORKFLOWS,
                activities=[send_email],
                activity_executor=executor,
                max_concurrent_activities=settings.activity_threads,
                max_cached_workflows=settings.workflow_cache,
            ),
            Worker(
                client,
                task_queue=email_task_queue(settings.task_queue),
                activities=[send_email],
                activity_executor=executor,
                max_concurrent_activities=settings.activity_threads,
            ),
        )
        logging.getLogger("bench").warning("no-op send worker polling")
        await workers.run()


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(message)s")
    asyncio.run(main())
