"""A customer's timezone: the one every local time is counted in, and how operators see it.

:func:`customer_zone` is the one place that says which zone a customer's local times
(quiet hours, a birthday's hour, the end of their day) are counted in; the send, its
guard, the content and the sweep all ask it.

Imported by workflows through ``imports_passed_through``: the sandbox's restricted
``zoneinfo`` cannot build a tzinfo, the real one can, and it reads only the
system's timezone database, the same on every replay.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def customer_zone(timezone: str | None, shop_timezone: str) -> ZoneInfo:
    """The customer's own timezone; the shop's when theirs is unknown or not a timezone
    (a shop's backend may send anything); UTC when neither is."""
    for name in (timezone, shop_timezone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


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
