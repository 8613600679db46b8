"""What every module of the ``triggermail`` command shares: the console, logging, the
journeys TOML or a clean exit, a store URL fit to print.

Apart so the command modules (``cli_journeys``, ``cli_temporal``, ``cli_report``) need not
import ``cli.py``, which imports them to mount their commands. Imports stay light:
``triggermail --help`` loads this; each command imports what it needs when it runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from triggermail.settings import Settings

if TYPE_CHECKING:
    from triggermail.journeys import JourneysConfig

console = Console()


def setup_logging(verbose: bool) -> None:
    """Log lines to stderr for the processes the CLI runs (worker, dev stack, API)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def journeys_or_exit(settings: Settings, failed: str) -> JourneysConfig:
    """The journeys TOML, or exit 2 saying what could not be done and what is wrong in it."""
    from triggermail.journeys import JourneysConfigError, load_journeys

    try:
        return load_journeys(settings.journeys)
    except JourneysConfigError as err:
        console.print(f"[red]{failed}:[/red] {err}")
        raise typer.Exit(2) from err
