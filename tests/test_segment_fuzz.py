"""The Segment parser, fuzzed: whatever a client sends, ``parse_event`` accepts an event
the store and the reply can carry, or refuses it with :class:`EventError` — never anything
a client would see as a 500.

Bounded and derandomised, so the suite stays fast and every run tries the same cases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starter.events import (
    ORDER_EVENTS,
    PRODUCT_EVENTS,
    EventError,
    SegmentEvent,
    parse_event,
)

EXAMPLES = 400
RECEIVED = datetime(2026, 6, 1, 12, tzinfo=UTC)

# Any code point, unpaired surrogates and NUL included: JSON escapes can carry them all.
anything = st.text(st.characters(exclude_categories=()), max_size=40)
words = st.sampled_from(["", "x", "tee-1", "Ana", "ana@example.com", "EUR", "fr-FR", "\x00"])
text = st.one_of(words, anything)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(min_value=0, max_value=300))):
        value = {"k": value} if draw(st.booleans()) else [value]
    return value


offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.one_of(
    st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-01:00", "AAA", ""]),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    text,
)
product = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(json_values, st.integers(), st.decimals(allow_nan=False).map(str))
        for key in (
            "product_id",
            "productId",
            "sku",
            "name",
            "price",
            "quantity",
            "currency",
            "cart_id",
            "stock",
            "repurchase_days",
            "brand",
            "category",
            "url",
        )
    },
)
properties = st.one_of(
    st.none(),
    json_values,
    deep(),
    product,
    product.flatmap(
        lambda p: st.fixed_dictionaries(
            {"order_id": st.one_of(text, st.integers()), "products": st.lists(product, max_size=3)},
            optional={"total": json_values, "revenue": json_values, "coupon": json_values},
        ).map(lambda order: {**p, **order})
    ),
)
traits = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(text, st.emails()),
            "firstName": text,
            "locale": text,
            "timezone": text,
            "birthday": st.one_of(text, st.dates().map(str), st.just("--02-29")),
            "marketing_consent": json_values,
        },
    ),
)
ids = st.one_of(text, st.integers(), st.none(), st.text(max_size=300))
call_types = st.sampled_from(["track", "identify", "page", "screen", "group", "alias"])
fields = {
    "anonymousId": ids,
    "messageId": ids,
    "previousId": ids,
    "event": st.one_of(st.sampled_from(sorted(PRODUCT_EVENTS | ORDER_EVENTS)), text),
    "timestamp": times,
    "sentAt": times,
    "originalTimestamp": times,
    "properties": properties,
    "traits": traits,
    "context": st.one_of(st.none(), json_values, st.fixed_dictionaries({"traits": traits})),
}
# Mostly calls that get past the envelope's checks, so the fuzz reaches what lies behind.
plausible = st.fixed_dictionaries(
    {"type": call_types, "userId": st.text("abc-1", min_size=1, max_size=8)}, optional=fields
)
events = st.fixed_dictionaries(
    {}, optional={"type": st.one_of(call_types, text), "userId": ids, **fields}
)


def accepted_or_refused(data: Any) -> SegmentEvent | None:
    try:
        return parse_event(data, default_type="track")
    except EventError as err:
        assert err.problems
        # The reply carries the problems: they must encode like any reply.
        json.dumps(err.problems).encode("utf-8", "strict")
        return None


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.one_of(plausible, plausible, events, json_values))
def test_any_body_is_accepted_whole_or_refused_with_a_reason(data: Any) -> None:
    event = accepted_or_refused(data)
    if event is None:
        return
    # What the intake does next with an accepted event, none of which may fail.
    assert event.message_id is not None
    happened = event.happened_at(RECEIVED)
    assert happened <= RECEIVED
    payload = event.model_dump(mode="json", by_alias=True, exclude_none=True)
    json.dumps(payload).encode("utf-8", "strict")
    for value in (event.user_id, event.anonymous_id, event.message_id, event.event):
        assert value is None or (len(value) <= 255 and "\x00" not in value)
    event.identity_traits()
    if event.type == "track" and event.event in PRODUCT_EVENTS:
        event.product()
    if event.type == "track" and event.event in ORDER_EVENTS:
        event.order()
