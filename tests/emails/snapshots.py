"""Rendered e-mails compared with reviewed files under ``tests/snapshots/``.

A template or translation change shows up as a readable diff of what customers
read. After a deliberate change, rewrite the files and review them like code:

    TRIGGERMAIL_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/emails
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent.parent / "snapshots"
UPDATE = "TRIGGERMAIL_UPDATE_SNAPSHOTS"


def assert_matches_snapshot(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get(UPDATE):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} does not exist; write it with {UPDATE}=1 and review it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=str(path),
                tofile="rendered",
            )
        )
        pytest.fail(f"rendered e-mail differs from its snapshot ({UPDATE}=1 to accept):\n{diff}")
