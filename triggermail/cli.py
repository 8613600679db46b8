"""The ``triggermail`` command: one entry point for operators, developers and deploys."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from rich.console import Console

from triggermail.settings import Settings

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
    from triggermail.devstack import DevError, run_dev
    from triggermail.journeys import JourneysConfigError

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


def main() -> None:  # pragma: no cover
    app()
