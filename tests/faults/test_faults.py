"""Durable journeys under faults: a killed worker, a restarted Temporal, a stopped database,
and every way SendGrid misbehaves — no duplicate, no silent loss, no retry storm.

Real processes: Temporal's dev server on a database file, ``python worker.py`` and
``triggermail api`` configured by their environment, the SendGrid transport pointed at the
fake. Counted from the fake's log and the ledger (``email_sends``), see :func:`tally`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.sendgrid import ACCEPT, DROP, Reply, error, rate_limited, slow
from tests.faults.conftest import record
from tests.faults.stack import PrivatePostgres, Stack, Tally, post_batch, until
from tests.faults.stack import cart_events as events_for

pytestmark = pytest.mark.faults


def check(result: Tally) -> None:
    record(result)
    assert result.duplicates == 0, result
    assert result.lost == 0, result
    # No retry storm: each injected failure costs its one request and one retry, no more.
    assert result.requests <= result.expected + result.injected, result


async def test_worker_killed_with_sends_in_flight(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        stack.sendgrid.default = slow(2.0)
        customers = await stack.enter("kill", 12)
        await until(lambda: len(stack.sendgrid.log) >= 4)
        stack.worker.kill()
        in_flight = len(stack.sendgrid.log)
        stack.sendgrid.default = ACCEPT
        await stack.worker.start()
        # The killed attempts time out (60 s) before their retry finds them mid-send.
        await stack.finish(customers)
        result = stack.tally("worker SIGKILL with sends in flight, restart", customers)
        result.note = f"{in_flight} requests at the fake when killed"
    check(result)
    # Those the fake held when the worker died (some may have been answered just before).
    assert result.unknown >= 1, result


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
async def test_temporal_restarted_mid_journey(tmp_path: Path, how: signal.Signals) -> None:
    async with Stack(tmp_path, reminder="3s", incentive="4s") as stack:
        customers = await stack.enter("restart", 10)
        await until(lambda: len(stack.sendgrid.taken()) >= 5)  # reminders going out
        stack.server.stop(how)
        await asyncio.sleep(8)  # the incentives' timers come due while it is down
        await stack.start_server()
        await stack.finish(customers)
        result = stack.tally("Temporal dev server stopped/killed and restarted", customers)
    check(result)


async def test_postgres_stopped_during_a_run(tmp_path: Path) -> None:
    postgres = PrivatePostgres()
    reason = postgres.unavailable()
    if reason:
        postgres.remove()
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    postgres.start()
    try:
        # The late batch must still be inside its journeys' span (13 s) when it is taken:
        # an event older than that is stored and starts nothing.
        stack = Stack(tmp_path, database_url=postgres.url, reminder="3s", incentive="10s")
        async with stack:
            before = await stack.enter("pg", 10)
            postgres.stop()  # a crash: connections cut mid-transaction
            refused = 0
            late = events_for("pg", 10, 10)

            async def keep_posting() -> None:
                nonlocal refused
                # As a Segment SDK does: the same batch again until it is taken.
                while (status := await post_batch(stack.http, late)) != 200:
                    assert status == 503, status
                    refused += 1
                    await asyncio.sleep(0.5)

            posting = asyncio.create_task(keep_posting())
            await asyncio.sleep(8)  # the first reminders come due with the store down
            assert refused > 0, "the intake took events with its store down"
            postgres.start()
            await posting
            customers = before + [f"pg-c{i}" for i in range(10, 20)]
            await stack.finish(customers)
            result = stack.tally("PostgreSQL crashed and restarted", customers)
            result.note = f"{refused} batches answered 503 meanwhile"
    finally:
        postgres.remove()
    check(result)


@pytest.fixture(scope="module")
async def sendgrid_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for SendGrid's faults, each with its own customers, one after the other."""
    async with Stack(tmp_path_factory.mktemp("sendgrid"), sendgrid_timeout_s=2.0) as stack:
        yield stack


SENDGRID_FAULTS = {
    "SendGrid slow (1.5 s answers)": ([], slow(1.5)),
    "SendGrid 429 with X-RateLimit-Reset": ([rate_limited(2.0)] * 6, ACCEPT),
    "SendGrid 5xx burst": ([error(503)] * 5 + [error(500)] * 3, ACCEPT),
    "SendGrid hangs past the client timeout": ([Reply(delay_s=4.0)] * 3, ACCEPT),
    "SendGrid 202 then connection dropped": ([DROP] * 3, ACCEPT),
}


@pytest.mark.parametrize("fault", list(SENDGRID_FAULTS))
async def test_sendgrid_fault(sendgrid_stack: Stack, fault: str) -> None:
    stack = sendgrid_stack
    script, default = SENDGRID_FAULTS[fault]
    stack.sendgrid.script.extend(script)
    stack.sendgrid.default = default
    customers = await stack.enter(f"sg{list(SENDGRID_FAULTS).index(fault)}", 8)
    try:
        await stack.finish(customers, timeout=120)
    finally:
        stack.sendgrid.default = ACCEPT
    result = stack.tally(fault, customers, injected=len(script))
    check(result)
    if "429" in fault:
        # Each e-mail refused with 429 was asked for again only once the limit had reset.
        for first, again in _retries(stack):
            assert again - first >= 0.9, (first, again)
    ambiguous = "hangs" in fault or "dropped" in fault
    assert result.unknown == (len(script) if ambiguous else 0), result


def _retries(stack: Stack) -> list[tuple[float, float]]:
    """(time of a 429, time of that e-mail's next request) for each 429."""
    out = []
    log = list(stack.sendgrid.log)
    for n, entry in enumerate(log):
        if entry.reply.status == 429:
            later = [e.at for e in log[n + 1 :] if e.send_id == entry.send_id]
            if later:
                out.append((entry.at, later[0]))
    return out
