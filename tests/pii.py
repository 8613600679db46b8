"""Scan workflow histories for personal data: workflows must carry ids, never who people are."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterable
from typing import Any

from temporalio.client import WorkflowHistory


def history_text(history: WorkflowHistory) -> str:
    """The history as Temporal stores it, with every payload's bytes decoded for the scan."""
    raw = history.to_json()
    decoded: list[str] = [raw]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    with contextlib.suppress(binascii.Error, ValueError):
                        decoded.append(base64.b64decode(value).decode("utf-8", "replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(raw))
    return "\n".join(decoded)


def personal_data_in(text: str, *, emails: Iterable[str], names: Iterable[str]) -> list[str]:
    """Which of these e-mail addresses (any case) and names (whole words) the text holds."""
    found = [email for email in emails if email and email.lower() in text.lower()]
    found += [
        name for name in names if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)
    ]
    return found
