"""Search attributes every journey carries, so operators find journeys by customer and step.

Values are opaque ids, journey and step names and a time — never personal data.
Clusters register them with ``triggermail temporal setup``; ``triggermail dev`` and
the tests register them on their own servers.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
"""The step the journey waits to send, or ``ended``."""
NEXT_SEND_AT = SearchAttributeKey.for_datetime("NextSendAt")

ALL = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, NEXT_SEND_AT)


def journey_attributes(journey: str, customer_id: str) -> TypedSearchAttributes:
    """What a journey starts with, so operators find it by customer at once."""
    return TypedSearchAttributes(
        [SearchAttributePair(CUSTOMER_ID, customer_id), SearchAttributePair(JOURNEY, journey)]
    )
