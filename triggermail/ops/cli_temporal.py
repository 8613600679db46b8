"""The cluster's side of triggermail: ``triggermail temporal setup`` (search attributes),
``triggermail schedules apply`` (the Schedules) and ``triggermail sweep`` (the daily sweep,
run now).

Commands that set up or drive Temporal itself rather than one journey, apart from ``cli.py``,
which mounts them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from triggermail.ops.cli_common import console, journeys_or_exit
from triggermail.settings import Settings

temporal_app = typer.Typer(help="The Temporal cluster triggermail runs on.", no_args_is_help=True)
schedules_app = typer.Typer(
    help="Temporal Schedules: the daily sweep (journeys of time passing), the hourly experiments.",
    no_args_is_help=True,
)


@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register the journeys' search attributes on the cluster TEMPORAL_ADDRESS points at."""
    from triggermail.temporal import connect, register_search_attributes, search_attribute_commands

    async def setup() -> list[str]:
        return await register_search_attributes(await connect())

    added = asyncio.run(setup())
    console.print(f"search attributes added: {', '.join(added) or 'none (all present)'}")
    console.print("[dim]the temporal CLI equivalent:[/dim]")
    for command in search_attribute_commands():
        console.print(f"  {command}")


@schedules_app.command("apply")
def schedules_apply() -> None:
    """Create or update the Schedules triggermail-daily-sweep and triggermail-experiments
    (TEMPORAL_ADDRESS's cluster).

    triggermail-daily-sweep runs the sweep daily at sweep.at of the journeys TOML (UTC,
    default 02:00); a run missed while the cluster was down starts within 12 h.

    triggermail-experiments evaluates the A/B experiments hourly and records their
    automatic winners (what `triggermail experiments --decide` does).

    Overlaps are skipped. Applying again updates them; a Schedule an operator paused
    stays paused.
    """
    from triggermail.ops.schedules import (
        EXPERIMENTS_CATCH_UP,
        EXPERIMENTS_SCHEDULE_ID,
        SWEEP_CATCH_UP,
        SWEEP_SCHEDULE_ID,
        apply_experiments_schedule,
        apply_sweep_schedule,
    )
    from triggermail.temporal import connect

    settings = Settings()
    journeys = journeys_or_exit(settings, "schedule not applied")

    async def apply() -> tuple[str, str]:
        client = await connect()
        sweep = await apply_sweep_schedule(
            client, at=journeys.sweep.at, task_queue=settings.task_queue
        )
        return sweep, await apply_experiments_schedule(client, task_queue=settings.task_queue)

    done, experiments_done = asyncio.run(apply())
    hours = SWEEP_CATCH_UP.total_seconds() / 3600
    console.print(
        f"schedule [bold]{SWEEP_SCHEDULE_ID}[/bold] {done}: SweepWorkflow daily at "
        f"{journeys.sweep.at:%H:%M} UTC on task queue {settings.task_queue!r}, "
        f"overlap skip, catch-up window {hours:g} h"
    )
    minutes = EXPERIMENTS_CATCH_UP.total_seconds() / 60
    console.print(
        f"schedule [bold]{EXPERIMENTS_SCHEDULE_ID}[/bold] {experiments_done}: "
        f"ExperimentsWorkflow hourly on task queue {settings.task_queue!r}, "
        f"overlap skip, catch-up window {minutes:g} min"
    )


def sweep(
    day: Annotated[
        str | None,
        typer.Option("--date", help="The day to sweep, YYYY-MM-DD (UTC); default: today."),
    ] = None,
) -> None:
    """Run the daily sweep now, through Temporal, and wait for its counts.

    It starts reactivations, win-backs, and the next day's birthdays and anniversaries.

    The workflow the Schedule runs, on the worker's task queue: a worker must be running.

    Journeys have deterministic IDs: sweeping a day again starts nothing twice.
    """
    from datetime import UTC, date

    from rich.table import Table
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from triggermail.ids import sweep_id
    from triggermail.temporal import connect
    from workflows.sweep import SweepInput, SweepResult

    if day is None:
        day = datetime.now(UTC).date().isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(
            f"{day!r} is not a day; write YYYY-MM-DD", param_hint="--date"
        ) from None
    settings = Settings()

    async def run() -> SweepResult:
        client = await connect()
        return await client.execute_workflow(
            "SweepWorkflow",
            SweepInput(day=day),
            id=sweep_id(day),
            task_queue=settings.task_queue,
            result_type=SweepResult,
            # Again the same day: a new run that finds every journey started already.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    console.print(f"sweeping {day} on task queue {settings.task_queue!r} …")
    result = asyncio.run(run())
    table = Table(
        "journey",
        "matched",
        "started",
        "started before",
        "skipped",
        title=f"sweep of {result.day} (covers {result.first_day} … {result.day})",
    )
    for kind, counts in result.counts.items():
        skipped = ", ".join(f"{why} {n}" for why, n in sorted(counts.skipped.items()))
        table.add_row(
            kind,
            str(counts.matched),
            str(counts.started),
            str(counts.already_started),
            skipped or "—",
        )
    console.print(table)
    started = sum(c.started for c in result.counts.values())
    console.print(f"{started} journey(s) started in {result.pages} page(s)")
