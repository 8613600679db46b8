"""The ``triggermail`` command: one entry point for operators, developers and deploys."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from triggermail.settings import Settings

if TYPE_CHECKING:
    from triggermail.analytics.experiments import ExperimentStatus
    from triggermail.journeys import JourneysConfig

app = typer.Typer(
    name="triggermail",
    help="Trigger e-mail journeys for online shops, each a durable Temporal workflow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def worker(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run a worker: every journey and activity, against TEMPORAL_ADDRESS (localhost:7233).

    More load means more worker processes against the same cluster.
    """
    from activities.rendering import TemplateError
    from triggermail.journeys import JourneysConfigError
    from worker import ConfigError, run_worker

    _logging(verbose)
    try:
        asyncio.run(run_worker(Settings()))
    except (TemplateError, JourneysConfigError, ConfigError) as err:
        console.print(f"[red]worker not started:[/red] {err}")
        raise typer.Exit(2) from err
    except KeyboardInterrupt:
        pass


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="Play the demo shop's scenario.")] = True,
    api_port: Annotated[int, typer.Option(help="Port of the HTTP API.")] = 8000,
) -> None:
    """Run everything locally: Temporal dev server + UI (:8233), store, worker, API, demo shop."""
    from activities.rendering import TemplateError
    from triggermail.journeys import JourneysConfigError
    from triggermail.ops.devstack import DevError, run_dev

    _logging(False)
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    try:
        asyncio.run(run_dev(Settings(), console=console, demo=demo, api_port=api_port))
    except (DevError, TemplateError, JourneysConfigError) as err:
        console.print(f"[red]dev stack not started:[/red] {err}")
        raise typer.Exit(2) from err
    except KeyboardInterrupt:
        console.print("stopped; `triggermail dev` resumes on the same data")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the store at TRIGGERMAIL_DATABASE_URL to the latest schema."""
    from triggermail.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    console.print(f"store at [bold]{_safe_url(settings.database_url)}[/bold] is at {revision}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


journeys_app = typer.Typer(
    help="Find journeys, read one's story, end one (the Temporal UI shows the same).",
    no_args_is_help=True,
)
app.add_typer(journeys_app, name="journeys")
temporal_app = typer.Typer(help="The Temporal cluster triggermail runs on.", no_args_is_help=True)
app.add_typer(temporal_app, name="temporal")


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

    async def cancel() -> None:
        await cancel_journey(await connect(), workflow_id, reason=reason)

    try:
        asyncio.run(cancel())
    except RPCError as err:
        console.print(f"[red]not cancelled:[/red] {err.message}")
        raise typer.Exit(1) from err
    console.print(f"{workflow_id}: cancel requested ({reason})")


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


schedules_app = typer.Typer(
    help="Temporal Schedules: the daily sweep (journeys of time passing), the hourly experiments.",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")


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
    journeys = _journeys_or_exit(settings, "schedule not applied")

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


@app.command()
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


@app.command()
def preview(
    journey: Annotated[str | None, typer.Argument(help="Journey, e.g. abandoned_cart.")] = None,
    step: Annotated[str | None, typer.Argument(help="Step of the journey, e.g. reminder.")] = None,
    locale: Annotated[
        str | None,
        typer.Option(help="Locale, e.g. fr or ja-JP; default: the customer's, else the shop's."),
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option(help="Render for this customer from the store (TRIGGERMAIL_DATABASE_URL)."),
    ] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Sample data (the default).")] = False,
    variant: Annotated[
        str, typer.Option(help="An A/B variant of the step (default: the step as written).")
    ] = "control",
    all_steps: Annotated[
        bool, typer.Option("--all", help="Every step of every journey in every locale.")
    ] = False,
    out: Annotated[str, typer.Option(help="Folder for the files.")] = ".triggermail/preview",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML in a browser.")
    ] = False,
) -> None:
    """Write a step's e-mail (HTML and text) and print its subject; --all writes a gallery.

    Nothing is sent or recorded, and no coupon is created.
    """
    import webbrowser
    from pathlib import Path

    from rich.markup import escape

    from activities.rendering import Renderer, TemplateError
    from triggermail.journeys import JourneysConfigError, load_journeys
    from triggermail.ops.preview import (
        PreviewError,
        gallery,
        render_customer,
        render_sample,
        write,
    )

    if customer is not None and sample:
        raise typer.BadParameter("--customer or --sample, not both")
    if all_steps and (customer is not None or journey is not None or variant != "control"):
        raise typer.BadParameter("--all renders every step with sample data; drop the others")
    if not all_steps and (journey is None or step is None):
        raise typer.BadParameter("name a JOURNEY and a STEP, or use --all")
    settings = Settings()
    folder = Path(out)
    try:
        journeys = load_journeys(settings.journeys)
        renderer = Renderer(shop_locale=journeys.shop.locale)
        if all_steps:
            index, previews = gallery(renderer, journeys, folder)
            console.print(f"{len(previews)} e-mails; gallery: [bold]{index}[/bold]")
            target = index
        else:
            assert journey is not None and step is not None
            if customer is not None:
                from triggermail.store import make_engine, make_session_factory, utcnow

                engine = make_engine(settings.database_url)
                try:
                    rendered = render_customer(
                        renderer,
                        journeys,
                        make_session_factory(engine),
                        journey,
                        step,
                        customer_id=customer,
                        locale=locale,
                        now=utcnow(),
                        variant=variant,
                    )
                finally:
                    engine.dispose()
            else:
                rendered = render_sample(
                    renderer, journeys, journey, step, locale=locale, variant=variant
                )
            written = write(rendered, folder, journey, step, variant)
            console.print(f"[bold]Subject:[/bold] {escape(rendered.subject)}")
            console.print(f"[dim]Preheader:[/dim] {escape(rendered.preheader)}")
            console.print(f"[dim]Locale:[/dim] {rendered.locale}")
            console.print(f"{written.html_path}\n{written.text_path}")
            target = written.html_path
    except (PreviewError, TemplateError, JourneysConfigError) as err:
        console.print(f"[red]no preview:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err
    if open_browser:
        webbrowser.open(target.resolve().as_uri())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for all).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve Segment's HTTP Tracking API (/v1/batch, /v1/track, …) and the customer card.

    SDKs send TRIGGERMAIL_WRITE_KEY as the Basic auth user name.

    TRIGGERMAIL_ADMIN_KEY opens GET /v1/customers/ID. Temporal: TEMPORAL_ADDRESS.
    """
    from triggermail.web.api import ApiStartError, serve

    settings = Settings()
    if settings.write_key is None or not settings.write_key.get_secret_value():
        console.print("[red]API not started:[/red] set TRIGGERMAIL_WRITE_KEY, the key SDKs send")
        raise typer.Exit(2)
    _logging(False)
    try:
        asyncio.run(serve(settings, host=host, port=port))
    except ApiStartError as err:
        console.print(f"[red]API not started:[/red] {err}")
        raise typer.Exit(2) from err
    except KeyboardInterrupt:
        pass


@app.command()
def customer(
    customer_id: Annotated[str, typer.Argument(help="The shop's customer id (userId).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The card as JSON, as GET /v1/customers/ID has it.")
    ] = False,
    events: Annotated[int, typer.Option(min=1, max=1000, help="Newest events to show.")] = 20,
) -> None:
    """The customer card: profile, consent, events, e-mails sent, journeys running now."""
    from sqlalchemy.exc import DBAPIError

    from triggermail.store import make_engine, make_session_factory
    from triggermail.temporal import connect, connect_config
    from triggermail.web.customer_card import CustomerCard, card_renderable, load_card

    settings = Settings()

    async def fetch() -> CustomerCard | None:
        unreachable = None
        try:
            client = await connect()
        except RuntimeError:  # what temporalio raises when it cannot connect
            client, unreachable = None, f"Temporal unreachable at {connect_config()['target_host']}"
        engine = make_engine(settings.database_url)
        try:
            card = await load_card(
                customer_id,
                session_factory=make_session_factory(engine),
                client=client,
                events=events,
            )
        finally:
            engine.dispose()
        if card is not None and unreachable:
            card.journeys_error = unreachable
        return card

    try:
        card = asyncio.run(fetch())
    except DBAPIError as err:
        console.print(f"[red]store unavailable:[/red] {err.orig or err}")
        raise typer.Exit(2) from err
    if card is None:
        console.print(
            f"[red]no customer {customer_id!r}[/red] in {_safe_url(settings.database_url)}"
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(card.model_dump_json(indent=2))
    else:
        console.print(card_renderable(card))


@app.command()
def report(
    since: Annotated[
        str, typer.Option(help="The period: this long before now, e.g. 7d, 30d, 12w.")
    ] = "30d",
    journey: Annotated[str | None, typer.Option(help="Only this journey.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON (schema: docs/report.md) instead of tables.")
    ] = False,
    html: Annotated[
        str | None, typer.Option(help="Also write a self-contained HTML report with charts here.")
    ] = None,
) -> None:
    """Sends, opens, clicks, conversions and attributed revenue per journey, step and variant.

    Read from the store (TRIGGERMAIL_DATABASE_URL) alone; attribution windows from the
    journeys TOML's [attribution].
    """
    from pathlib import Path

    from sqlalchemy.exc import DBAPIError

    from triggermail.analytics.report import build_report
    from triggermail.analytics.report_display import report_html, report_renderable
    from triggermail.durations import parse_duration
    from triggermail.store import make_engine, make_session_factory, utcnow
    from workflows.registry import NAMES

    try:
        period = parse_duration(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from err
    if journey is not None and journey not in NAMES:
        known = ", ".join(sorted(NAMES))
        raise typer.BadParameter(
            f"{journey!r} is not a journey; known: {known}", param_hint="--journey"
        )
    settings = Settings()
    journeys = _journeys_or_exit(settings, "no report")
    until = utcnow()
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            built = build_report(
                session, journeys, since=until - period, until=until, journey=journey
            )
    except DBAPIError as err:
        console.print(f"[red]store unavailable:[/red] {err.orig or err}")
        raise typer.Exit(2) from err
    finally:
        engine.dispose()
    if html is not None:
        Path(html).write_text(report_html(built), encoding="utf-8")
    if as_json:
        typer.echo(built.model_dump_json(indent=2))
    else:
        console.print(report_renderable(built))
        if html is not None:
            console.print(f"HTML report: [bold]{html}[/bold]")


@app.command()
def experiments(
    decide: Annotated[
        bool,
        typer.Option(
            "--decide",
            help="Record the figures and the winners that are due now, as the hourly "
            "Schedule does (no Temporal needed).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """A/B experiments: per variant entered, sent, converted, rate (95 % CI), P(best); winner.

    Read-only by default: the Schedule triggermail-experiments decides winners hourly.

    Figures from the store (TRIGGERMAIL_DATABASE_URL); experiments from TRIGGERMAIL_JOURNEYS.
    """
    from sqlalchemy.exc import DBAPIError

    from activities.experiments import ExperimentActivities, ExperimentsError
    from triggermail.store import make_engine, make_session_factory, utcnow

    settings = Settings()
    journeys = _journeys_or_exit(settings, "no experiments")
    now = utcnow()
    engine = make_engine(settings.database_url)
    try:
        evaluation = ExperimentActivities(
            session_factory=make_session_factory(engine), journeys=journeys, clock=lambda: now
        )
        statuses = evaluation.statuses(decide=decide)
    except ExperimentsError as err:
        console.print(f"[red]no experiments:[/red] {err}")
        raise typer.Exit(2) from err
    except DBAPIError as err:
        console.print(f"[red]store unavailable:[/red] {err.orig or err}")
        raise typer.Exit(2) from err
    finally:
        engine.dispose()
    if as_json:
        typer.echo(experiments_json(statuses, now=now, decided=decide))
        return
    if not statuses:
        console.print("no experiments: no enabled step has variants")
        return
    for status in statuses:
        console.print(experiment_renderable(status))


def experiments_json(statuses: list[ExperimentStatus], *, now: datetime, decided: bool) -> str:
    """``{"evaluated_at", "decide", "experiments": [ExperimentStatus as a dict]}``, with
    datetimes in ISO 8601 and each interval a ``[low, high]`` pair."""
    import json

    def encode(value: object) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not JSON")

    document = {
        "evaluated_at": now,
        "decide": decided,
        "experiments": [status.as_dict() for status in statuses],
    }
    return json.dumps(document, default=encode, indent=2)


def experiment_renderable(status: ExperimentStatus) -> Any:
    """One experiment: a row per variant, and a line saying where its decision stands."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    total = sum(v.weight for v in status.variants) or 1.0
    table = Table(
        "variant",
        "weight",
        "entered",
        "sent",
        "converted",
        "rate (95 % CI)",
        "P(best)",
        title=f"{status.name} · {status.journey} / {status.step}",
        title_justify="left",
    )
    for v in status.variants:
        rate = "—"
        if v.rate is not None:
            rate = f"{v.rate:.1%}"
            if v.ci is not None:
                rate += f" ({v.ci[0]:.1%}\N{EN DASH}{v.ci[1]:.1%})"
        best = f"{v.probability_best:.1%}" if v.probability_best is not None else "—"
        name = f"{v.name} ★" if v.name == status.winner else v.name
        table.add_row(
            name,
            f"{v.weight:g} ({v.weight / total:.0%})",
            str(v.entered),
            str(v.sent),
            str(v.converted),
            rate,
            best,
        )
    counted = (
        f"entries from {status.started_at:%Y-%m-%d %H:%M} to "
        f"{status.counted_until:%Y-%m-%d %H:%M} UTC (later ones are inside their window)"
    )
    return Group(table, Text(counted, style="dim"), Text(_experiment_state(status)), Text(""))


def _experiment_state(status: ExperimentStatus) -> str:
    if status.winner is not None:
        when = f"{status.decided_at:%Y-%m-%d %H:%M} UTC" if status.decided_at else "?"
        chance = f" at {status.probability:.1%}" if status.probability is not None else ""
        now = "decided now" if status.decided_now else "decided"
        return f"winner: {status.winner}{chance}, {now} {when}; new entries get it"
    return status.note


def _journeys_or_exit(settings: Settings, failed: str) -> JourneysConfig:
    """The journeys TOML, or exit 2 saying what could not be done and what is wrong in it."""
    from triggermail.journeys import JourneysConfigError, load_journeys

    try:
        return load_journeys(settings.journeys)
    except JourneysConfigError as err:
        console.print(f"[red]{failed}:[/red] {err}")
        raise typer.Exit(2) from err


def main() -> None:  # pragma: no cover
    app()
