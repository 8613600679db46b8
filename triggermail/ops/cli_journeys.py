"""``triggermail journeys list | show | cancel``: find journeys, read one's story, end one.

What an operator does to the journeys running on Temporal (the Temporal UI shows the same),
apart from ``cli.py``, which mounts this group.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import typer

from triggermail.ops.cli_common import console
from triggermail.settings import Settings

journeys_app = typer.Typer(
    help="Find journeys, read one's story, end one (the Temporal UI shows the same).",
    no_args_is_help=True,
)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


@journeys_app.command("list")
def journeys_list(
    customer: Annotated[str | None, typer.Option(help="Only this customer's journeys.")] = None,
    journey: Annotated[
        str | None, typer.Option(help="Only this journey (abandoned_cart, …).")
    ] = None,
    running: Annotated[
        bool | None, typer.Option("--running/--closed", help="Only running or only closed.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """Journeys by customer, journey and state, newest first."""
    from rich.table import Table

    from triggermail.ops.operators import list_journeys
    from triggermail.temporal import connect

    async def fetch() -> list[Any]:
        client = await connect()
        return await list_journeys(
            client, customer=customer, journey=journey, running=running, limit=limit
        )

    rows = asyncio.run(fetch())
    table = Table("workflow id", "journey", "customer", "state", "step", "next send", "started")
    for row in rows:
        table.add_row(
            row.workflow_id,
            row.journey or "",
            row.customer_id or "",
            row.status,
            row.step or "",
            _when(row.next_send_at),
            _when(row.started_at),
        )
    console.print(table)
    console.print(f"{len(rows)} journey(s)")


@journeys_app.command("show")
def journeys_show(
    workflow_id: Annotated[str, typer.Argument(help="e.g. abandoned-cart/<customer id>")],
) -> None:
    """A journey's timeline: entry, waits, sends with their status, exit and why."""
    from rich.table import Table

    from triggermail.ops.operators import journey_timeline, send_ids
    from triggermail.temporal import connect

    async def fetch() -> Any:
        client = await connect()
        return await journey_timeline(client, workflow_id)

    timeline = asyncio.run(fetch())
    ledger = _ledger(send_ids(timeline.entries))
    table = Table("time (UTC)", "what", "", title=f"{workflow_id} · {timeline.status}")
    for entry in timeline.entries:
        text = entry.text
        row = ledger.get(entry.send_id or "")
        if row is not None:
            text += f" — “{row.subject}”, ledger: {row.status}"
        table.add_row(entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.kind, text)
    console.print(table)
    if timeline.journey is not None:
        status = timeline.journey
        waiting = f"for {status.waiting_for} " if status.waiting_for else ""
        console.print(
            f"now: {status.state} {waiting}— next: {status.next_step or '—'}"
            f" at {status.next_send_local or '—'}"
        )


def _ledger(send_ids: list[str]) -> dict[str, Any]:
    """Ledger rows for these sends, when the store is reachable from here."""
    if not send_ids:
        return {}
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from triggermail.store import EmailSend, make_engine, make_session_factory

    engine = make_engine(Settings().database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.scalars(select(EmailSend).where(EmailSend.id.in_(send_ids)))
            return {row.id: row for row in rows}
    except SQLAlchemyError:
        return {}
    finally:
        engine.dispose()


@journeys_app.command("cancel")
def journeys_cancel(
    workflow_id: Annotated[str, typer.Argument(help="e.g. abandoned-cart/<customer id>")],
    reason: Annotated[str, typer.Option(help="Why; kept in the journey's history.")],
) -> None:
    """End a journey gracefully: no e-mail after this, the reason recorded."""
    from temporalio.service import RPCError

    from triggermail.ops.operators import cancel_journey
    from triggermail.temporal import connect

    async def cancel() -> bool:
        return await cancel_journey(await connect(), workflow_id, reason=reason)

    try:
        running = asyncio.run(cancel())
    except RPCError as err:
        console.print(f"[red]not cancelled:[/red] {err.message}")
        raise typer.Exit(1) from err
    if not running:
        console.print(f"[red]not cancelled:[/red] no journey runs under {workflow_id}")
        raise typer.Exit(1)
    console.print(f"{workflow_id}: cancel requested ({reason})")
