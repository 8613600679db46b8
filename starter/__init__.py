"""What backend services call: event intake (Python here, HTTP in the API), workflow IDs, starts."""

from starter.events import EventError, SegmentEvent, parse_event
from starter.intake import Intake, IntakeResult, IntakeUnavailable

__all__ = [
    "EventError",
    "Intake",
    "IntakeResult",
    "IntakeUnavailable",
    "SegmentEvent",
    "parse_event",
]
