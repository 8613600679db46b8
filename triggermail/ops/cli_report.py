"""``triggermail report`` and ``triggermail experiments``: what the journeys achieved, read
from the store.

The analytics' readouts (tables, JSON, the HTML report), apart from ``cli.py``, which mounts
them; neither needs Temporal.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from triggermail.ops.cli_common import console, journeys_or_exit
from triggermail.settings import Settings

if TYPE_CHECKING:
    from triggermail.analytics.experiments import ExperimentStatus


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
    journeys = journeys_or_exit(settings, "no report")
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
    journeys = journeys_or_exit(settings, "no experiments")
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
