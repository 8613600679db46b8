"""What backend services call: event intake (Python here, HTTP in the API), workflow IDs, starts.

The names are loaded on first use: workflow code imports ``starter.ids`` for its naming
rules, and importing the package must not pull in the intake (which imports every
workflow) while a workflow module is still loading.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starter.events import EventError, SegmentEvent, parse_event
    from starter.intake import Intake, IntakeResult, IntakeUnavailable

_WHERE = {
    "EventError": "starter.events",
    "SegmentEvent": "starter.events",
    "parse_event": "starter.events",
    "Intake": "starter.intake",
    "IntakeResult": "starter.intake",
    "IntakeUnavailable": "starter.intake",
}

__all__ = [
    "EventError",
    "Intake",
    "IntakeResult",
    "IntakeUnavailable",
    "SegmentEvent",
    "parse_event",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'starter' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
