"""Birthdays as shops send them: ``1990-02-28``, ``--02-29`` (no year), or a timestamp."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

NO_YEAR = 1904
"""Stands in for an unknown year: a leap year, so 29 February fits."""


def parse_birthday(value: Any) -> date | None:
    """The date in ``value``; None for nothing or for what is not a date.

    Accepts ISO dates (``1990-02-28``), ISO timestamps (the date part counts: a birthday
    is a calendar day, not an instant), and vCard's yearless ``--MM-DD``.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if text.startswith("--"):
            month, day = text[2:].split("-")
            return date(NO_YEAR, int(month), int(day))
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def month_day(day: date) -> str:
    return day.strftime("%m-%d")


def birthday_on(born: date, year: int) -> date:
    """The day a birthday is kept in ``year``: 29 February is kept on 28 February in
    years without one."""
    if born.month == 2 and born.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, born.month, born.day)
