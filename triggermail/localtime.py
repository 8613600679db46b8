"""Times shown to operators in UTC and in the customer's own timezone.

Imported by workflows through ``imports_passed_through``: the sandbox's restricted
``zoneinfo`` cannot build a tzinfo, the real one can, and it reads only the
system's timezone database, the same on every replay.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utc_and_local(moment: datetime, timezone: str | None) -> str:
    """``2026-11-22 10:30 UTC (11:30 Europe/Paris)``; UTC alone for an unknown zone."""
    utc = moment.strftime("%Y-%m-%d %H:%M UTC")
    if not timezone or timezone == "UTC":
        return utc
    try:
        local = moment.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return utc
    day = "" if local.date() == moment.date() else local.strftime("%Y-%m-%d ")
    return f"{utc} ({day}{local.strftime('%H:%M')} {timezone})"
