"""Durations as marketers write them in the journeys TOML: ``"30m"``, ``"24h"``, ``"14d"``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse ``"30m"``, ``"1d12h"`` and the like.

    Raises:
        ValueError: when the text is not one or more ``<number><s|m|h|d|w>`` parts.
    """
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact.replace(" ", ""):
        raise ValueError(
            f"{text!r} is not a duration; write e.g. '20s', '30m', '24h', '14d' or '1d12h'"
        )
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit]: int(number)})
    return total


def format_duration(delta: timedelta) -> str:
    """The shortest ``1d2h30m`` form, for summaries an operator reads."""
    seconds = round(delta.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)
