"""E-mails per second end to end — guard, ledger, render, SendGrid call — beside raw Temporal.

The same stack as ``bench/lateness.py`` (dev server, ``python worker.py`` and ``triggermail
api`` as processes, fake SendGrid answering at once, PostgreSQL store, no send rate limit).
*Ours*: N abandoned-cart journeys asleep, all due at one instant; each sends its reminder
through the real send activity (store re-read, ledger row, Jinja2 render with CSS inlined,
the sendgrid library's HTTP call), and closes. *Raw*: N workflows that sleep to one
instant and run one no-op activity (``bench/raw_worker.py``), on the same server. Rate =
N ÷ (last close minus due). Raw runs first, then ours, then *ours with a no-op send*
(``bench/noop_send_worker.py`` in our worker's place: the journeys without the e-mail), then
raw again (the server slows as it fills); raw's figure is the mean of its two runs. The
no-op run splits the gap to raw into what the journeys cost and what the send path costs.

    .venv/bin/python bench/e2e.py [--quick] [--emails N]

Last line: ``RESULT ours_per_s=… raw_per_s=… ratio=… journeys_per_s=… journeys_ratio=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from loadkit import (
    cpu_note,
    cpu_seconds,
    history_length,
    noop_sends,
    ours_burst,
    raw_burst,
    stack_with_raw,
)


async def bench(emails: int) -> tuple[float, float, float]:
    """E-mails/s: ours, raw's (mean of two runs), ours with a no-op send."""
    with tempfile.TemporaryDirectory() as folder:
        async with stack_with_raw(Path(folder), reminder="1h", incentive=None) as (stack, raw):
            processes = {
                "server": stack.server,
                "worker": stack.worker,
                "api": stack.api,
                "raw worker": raw,
            }
            start = cpu_seconds(processes)
            raw_before, raw_id = await raw_burst(stack, raw, emails, watch=processes)
            after_raw = cpu_seconds(processes)
            ours, ingest, ours_id = await ours_burst(stack, emails, watch=processes)
            after_ours = cpu_seconds(processes)
            async with noop_sends(stack, Path(folder)) as noop:
                watch = {"server": stack.server, "worker": noop}
                journeys, _, _ = await ours_burst(stack, emails, watch=watch, sends=False)
            raw_after, _ = await raw_burst(stack, raw, emails, watch=processes)
            ours_events = await history_length(stack.client, ours_id)
            raw_events = await history_length(stack.client, raw_id)
            print(f"history events: journey of one e-mail {ours_events}, raw {raw_events}")
            print("CPU ms per workflow, raw (starts included):", cpu_note(start, after_raw, emails))
            print(
                "CPU ms per e-mail, ours (intake's starts on the server included):",
                cpu_note(after_raw, after_ours, emails),
            )
    raw_s = (raw_before + raw_after) / 2
    print(
        f"{emails} e-mails due at once: ours {ours:.1f} s, ours with a no-op send "
        f"{journeys:.1f} s; raw {raw_before:.1f} s before, {raw_after:.1f} s after; "
        f"intake {ingest:.0f} customers/s"
    )
    return emails / ours, emails / raw_s, emails / journeys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 e-mails")
    parser.add_argument("--emails", type=int, default=2000)
    args = parser.parse_args()
    ours, raw, journeys = asyncio.run(bench(500 if args.quick else args.emails))
    print(
        f"RESULT ours_per_s={ours:.1f} raw_per_s={raw:.1f} ratio={ours / raw:.2f} "
        f"journeys_per_s={journeys:.1f} journeys_ratio={journeys / raw:.2f}"
    )


if __name__ == "__main__":
    main()
