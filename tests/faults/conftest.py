"""Fault injection runs real processes: opt in with ``make test-faults``; the table at the end."""

from __future__ import annotations

import os

import pytest
from rich.console import Console
from rich.table import Table

from tests.faults.stack import Tally

RESULTS: dict[str, Tally] = {}
"""Every fault's count, by fault, in the order they ran."""


def record(result: Tally) -> None:
    """Add a trial's count to its fault's row."""
    RESULTS.setdefault(result.fault, Tally(result.fault)).add(result)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TRIGGERMAIL_FAULT_TESTS"):
        return
    skip = pytest.mark.skip(reason="fault injection with real processes: run `make test-faults`")
    for item in items:
        if "faults" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    table = Table(title="Faults: e-mails counted from the fake SendGrid's log and the ledger")
    for column in ("fault", "trials", "expected", "sent", "duplicates", "lost"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    table.add_column("unknown (delivered)", justify="right")
    table.add_column("requests (faults injected)", justify="right")
    table.add_column("note")
    for r in RESULTS.values():
        table.add_row(
            r.fault,
            str(r.trials),
            str(r.expected),
            str(r.sent),
            str(r.duplicates),
            str(r.lost),
            f"{r.unknown} ({r.unknown_delivered})",
            f"{r.requests} ({r.injected})",
            r.note,
        )
    console = Console(width=160)
    console.print(table)
    console.print(
        "unknown: the request left and no answer came (or the worker died mid-call); by the "
        "product's rule such an e-mail is not sent again. (delivered): how many of those the "
        "fake SendGrid did take."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault injection against real processes")
