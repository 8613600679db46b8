"""The ``triggermail`` command: one entry point for operators, developers and deploys.

This module holds the Typer ``app`` (the console script), the commands that run a process
(``worker``, ``dev``, ``api``), ``db upgrade``, ``preview`` and ``customer``, and mounts the
groups kept in their own modules: ``journeys`` (``cli_journeys``), ``temporal``,
``schedules`` and ``sweep`` (``cli_temporal``), ``report`` and ``experiments``
(``cli_report``). Commands import what they need when they run, so ``--help`` starts fast.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from triggermail.ops.cli_common import console, safe_url, setup_logging
from triggermail.ops.cli_journeys import journeys_app
from triggermail.ops.cli_report import experiments, report
from triggermail.ops.cli_temporal import schedules_app, sweep, temporal_app
from triggermail.settings import Settings

app = typer.Typer(
    name="triggermail",
    help="Trigger e-mail journeys for online shops, each a durable Temporal workflow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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

    setup_logging(verbose)
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

    setup_logging(False)
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
    console.print(f"store at [bold]{safe_url(settings.database_url)}[/bold] is at {revision}")


# Groups and commands kept in their own modules, mounted here: Typer lists commands, then
# groups, each in the order they are added, and `triggermail --help` keeps its order.
app.add_typer(journeys_app, name="journeys")
app.add_typer(temporal_app, name="temporal")
app.add_typer(schedules_app, name="schedules")

app.command()(sweep)


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
    setup_logging(False)
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
            f"[red]no customer {customer_id!r}[/red] in {safe_url(settings.database_url)}"
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(card.model_dump_json(indent=2))
    else:
        console.print(card_renderable(card))


app.command()(report)
app.command()(experiments)


def main() -> None:  # pragma: no cover
    app()
