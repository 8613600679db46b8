"""What the journey benchmarks share: the stack as production runs it (Temporal's dev server,
``python worker.py`` and ``triggermail api`` as processes, the fake SendGrid), customers
entered through the HTTP intake with chosen due times, raw Temporal beside it on the same
server (``bench/raw_worker.py``), and the clocks read from Temporal's own close times.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import sqlalchemy as sa
from raw_worker import RawJourney
from temporalio.client import Client

from tests.faults.stack import Process, Stack, post_batch
from triggermail.ids import abandoned_cart_id
from triggermail.store import EmailSend, make_engine

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 100
IN_FLIGHT = 4
"""Batches in flight to the intake, as a few SDK threads would send them."""


@contextlib.contextmanager
def database(folder: Path) -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (production's store), else SQLite."""
    name = f"triggermail_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        print("PostgreSQL not reachable: SQLite store")
        yield f"sqlite:///{folder / 'store.db'}"
        return
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class BenchWorker(Process):
    """A worker script of ``bench/``, started and waited for until its log says it polls."""

    script = ""
    ready = ""
    env: dict[str, str]

    async def start(self) -> None:
        seen = len(self.log_text())
        script = Path(__file__).resolve().parent / self.script
        self._spawn([sys.executable, str(script)], env=self.env)
        while self.ready not in self.log_text()[seen:]:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(self.log_text())
            await asyncio.sleep(0.1)


class RawWorker(BenchWorker):
    script, ready = "raw_worker.py", "raw worker polling"

    def __init__(self, folder: Path, address: str, queue: str) -> None:
        super().__init__("raw-worker", folder)
        self.queue = queue
        self.env = {"TEMPORAL_ADDRESS": address, "RAW_TASK_QUEUE": queue}


class NoopSendWorker(BenchWorker):
    """Our journeys with a no-op send (``bench/noop_send_worker.py``), in our worker's place."""

    script, ready = "noop_send_worker.py", "no-op send worker polling"

    def __init__(self, folder: Path, stack: Stack) -> None:
        super().__init__("noop-send-worker", folder)
        self.env = stack.settings.env()


@contextlib.asynccontextmanager
async def noop_sends(stack: Stack, folder: Path) -> AsyncIterator[NoopSendWorker]:
    """Our worker stopped and the no-op send worker polling its queues; ours back after."""
    stack.worker.stop()
    noop = NoopSendWorker(folder, stack)
    await noop.start()
    try:
        yield noop
    finally:
        noop.stop()
        await stack.worker.start()


@contextlib.asynccontextmanager
async def stack_with_raw(folder: Path, **options: Any) -> AsyncIterator[tuple[Stack, RawWorker]]:
    """Our stack (no send rate limit unless asked) and raw Temporal's worker, one server.

    The dev server keeps its state in memory here: on a database file it spends most of
    its time in SQLite's writes, and measures the disk more than Temporal or us.
    """
    options.setdefault("sends_per_second", 0)
    options.setdefault("temporal_in_memory", True)
    with database(folder) as url:
        async with Stack(folder, database_url=url, **options) as stack:
            raw = RawWorker(folder, stack.server.address, "bench-raw")
            await raw.start()
            try:
                yield stack, raw
            finally:
                raw.stop()


def customer_events(customer: str, at: datetime) -> list[dict[str, Any]]:
    """An identify with address and consent, and a cart left behind at ``at``."""
    stamp = at.isoformat()
    traits = {"email": f"{customer}@example.com", "firstName": "Ana", "marketing_consent": True}
    return [
        {
            "type": "identify",
            "userId": customer,
            "messageId": f"{customer}-id",
            "timestamp": stamp,
            "traits": traits,
        },
        {
            "type": "track",
            "event": "Product Added",
            "userId": customer,
            "messageId": f"{customer}-cart",
            "timestamp": stamp,
            "properties": {
                "product_id": "tee-1",
                "name": "Organic cotton T-shirt",
                "price": 24.9,
                "cart_id": f"{customer}-k",
            },
        },
    ]


async def enter(stack: Stack, carts: dict[str, datetime]) -> float:
    """Customers (id → when their cart was left) through ``POST /v1/batch``; customers/s."""
    events = [e for customer, at in carts.items() for e in customer_events(customer, at)]
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def sender() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            while (status := await post_batch(stack.http, batch)) != 200:
                assert status == 503, status
                await asyncio.sleep(0.5)

    start = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return len(carts) / (time.monotonic() - start)


async def start_raw(client: Client, queue: str, run: str, dues: list[float]) -> None:
    limit = asyncio.Semaphore(64)

    async def one(i: int, due: float) -> None:
        async with limit:
            await client.start_workflow(RawJourney.run, due, id=f"raw/{run}/{i}", task_queue=queue)

    await asyncio.gather(*(one(i, due) for i, due in enumerate(dues)))


async def close_times(client: Client, query: str, count: int, *, timeout: float) -> list[float]:
    """Close times (Unix seconds) of the ``count`` workflows ``query`` finds, once all closed."""
    deadline = time.monotonic() + timeout
    query = f"{query} AND ExecutionStatus != 'Running'"
    # Counted until all have closed, then listed once: listing thousands every second would
    # load the server being measured.
    while (done := (await client.count_workflows(query)).count) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {count} closed")
        await asyncio.sleep(1)
    return [w.close_time.timestamp() async for w in client.list_workflows(query) if w.close_time]


async def raw_burst(
    stack: Stack, raw: RawWorker, count: int, *, watch: dict[str, Process] | None = None
) -> tuple[float, str]:
    """Seconds raw Temporal takes to drain ``count`` sleepers all due at one instant, and
    one of their workflow IDs; with ``watch``, prints each process's CPU during the drain."""
    # The instant must come after the last start: time a few starts first (those sleep
    # for a day, outside the measurement), then leave three times what they took (load varies).
    probe = max(20, count // 20)
    began = time.time()
    await start_raw(stack.client, raw.queue, uuid.uuid4().hex[:6], [began + 86400] * probe)
    due = time.time() + count * (time.time() - began) / probe * 3 + 10
    run = uuid.uuid4().hex[:6]
    await start_raw(stack.client, raw.queue, run, [due] * count)
    assert time.time() < due, "raw starts ran past the due time"
    query = f"WorkflowId STARTS_WITH 'raw/{run}/'"
    drain = DrainCpu(due, watch)
    closed = await close_times(stack.client, query, count, timeout=count + 600)
    drain.report("raw", count)
    return max(closed) - due, f"raw/{run}/0"


async def ours_burst(
    stack: Stack, count: int, *, watch: dict[str, Process] | None = None, sends: bool = True
) -> tuple[float, float, str]:
    """Seconds our journeys take to send ``count`` e-mails all due at one instant, the
    intake's rate (customers/s), and one journey's ID. The journeys wait 1 h after their
    carts, so the carts are dated back to put the instant after the last entry (timed on
    a few first, as raw's). With ``watch``, prints each process's CPU during the drain.
    ``sends=False``: a no-op send worker polls, nothing reaches the fake SendGrid."""
    probe = max(20, count // 20)
    began = time.time()
    probe_run = uuid.uuid4().hex[:6]
    await enter(stack, dict.fromkeys([f"{probe_run}-c{i}" for i in range(probe)], now()))
    due = time.time() + count * (time.time() - began) / probe * 3 + 10
    run = uuid.uuid4().hex[:6]
    customers = [f"{run}-c{i}" for i in range(count)]
    left_at = datetime.fromtimestamp(due, UTC) - timedelta(hours=1)
    rate = await enter(stack, dict.fromkeys(customers, left_at))
    assert time.time() < due, f"ingest ({rate:.0f} customers/s) ran past the due time"
    drain = DrainCpu(due, watch)
    closed = await journeys_closed(stack.client, run, count, timeout=count + 600)
    drain.report("ours" if sends else "ours, send a no-op", count)
    if sends:
        result = stack.tally("burst", customers)
        assert result.duplicates == result.lost == result.unknown == 0, result
    return max(closed) - due, rate, abandoned_cart_id(customers[0])


async def history_length(client: Client, workflow_id: str) -> int:
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


def now() -> datetime:
    return datetime.now(UTC)


async def journeys_closed(client: Client, run: str, count: int, *, timeout: float) -> list[float]:
    """Close times of the ``count`` abandoned-cart journeys of customers ``<run>-…``, once all
    closed: waited for as raw's are, by one visibility query a second. (Describing each open
    journey in turn, as the fault tests do, sent the server it measures hundreds of requests
    a second during the drain: about 10 ms of its CPU per e-mail, which raw was spared.)"""
    query = f"WorkflowId STARTS_WITH '{abandoned_cart_id(run)}-'"
    return await close_times(client, query, count, timeout=timeout)


def send_times(stack: Stack, customers: list[str]) -> dict[str, float]:
    """When the fake SendGrid received each customer's e-mail (Unix seconds)."""
    engine = make_engine(stack.database_url)
    with engine.connect() as conn:
        owner = dict(conn.execute(sa.select(EmailSend.id, EmailSend.customer_id)).all())
    engine.dispose()
    wanted = set(customers)
    return {
        owner[e.send_id]: e.at
        for e in stack.sendgrid.log
        if e.taken and owner.get(e.send_id) in wanted
    }


class RssSampler:
    """The largest resident set of a process, sampled every second in the background."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(1)

    def stop(self) -> float:
        self._task.cancel()
        return self.peak / 2**20


def cpu_seconds(processes: dict[str, Process]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far, by name."""
    out = {}
    for name, process in processes.items():
        times = psutil.Process(process.pid).cpu_times()
        out[name] = times.user + times.system
    return out


def cpu_everywhere(processes: dict[str, Process]) -> dict[str, float]:
    """:func:`cpu_seconds`, plus PostgreSQL's processes and this one (the fake SendGrid)."""
    out = cpu_seconds(processes)
    postgres = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] == "postgres" and process.info["cpu_times"]:
            postgres += process.info["cpu_times"].user + process.info["cpu_times"].system
    out["postgres"] = postgres
    times = psutil.Process().cpu_times()
    out["bench (fake SendGrid)"] = times.user + times.system
    return out


class DrainCpu:
    """Each process's CPU from a burst's due instant to the end of its drain.

    PostgreSQL's backends that end during the drain drop out of the sum, so its figure is
    a floor; the store's connection pool keeps its backends for the whole run.
    """

    def __init__(self, due: float, processes: dict[str, Process] | None) -> None:
        self.processes = processes
        self.due = due
        self.at_due: dict[str, float] | None = None
        self._task = asyncio.create_task(self._read()) if processes else None

    async def _read(self) -> None:
        await asyncio.sleep(max(0.0, self.due - time.time()))
        assert self.processes is not None
        self.at_due = cpu_everywhere(self.processes)

    def report(self, what: str, count: int) -> None:
        if self._task is None or self.processes is None:
            return
        if self.at_due is None:
            self._task.cancel()
            return
        after = cpu_everywhere(self.processes)
        print(f"CPU ms per e-mail during the drain, {what}:", cpu_note(self.at_due, after, count))


def cpu_note(before: dict[str, float], after: dict[str, float], count: int) -> str:
    """CPU ms per item in each process between two readings."""
    return ", ".join(f"{name} {(after[name] - before[name]) / count * 1000:.1f}" for name in before)


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
