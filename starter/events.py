"""Segment-spec events (identify, track, page, alias), validated at the door.

Shops send these unchanged from Segment, RudderStack or Jitsu SDKs, so the models
accept everything the spec allows and check only the fields triggermail acts on;
what is wrong is reported by its path in the event (``properties.products[0].price``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from triggermail.birthdays import parse_birthday
from triggermail.journey_tables import LONGEST_CYCLE

PRODUCT_EVENTS = frozenset(
    {"Product Viewed", "Product Added", "Product Removed", "Product Reviewed"}
)
ORDER_EVENTS = frozenset(
    {
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Order Refunded",
        "Order Cancelled",
        "Order Shipped",
        "Order Delivered",
    }
)
ORDER_ID_REQUIRED = frozenset(
    {"Order Completed", "Order Refunded", "Order Cancelled", "Order Shipped", "Order Delivered"}
)


class EventError(ValueError):
    """An event that cannot be accepted; ``problems`` pairs each field path with what is wrong."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class _Open(BaseModel):
    # Segment payloads carry many fields we do not use; keep them, check ours.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# Bounds are the store's columns: a value the store cannot hold is refused here, by name,
# rather than failing the database write (which a client would retry forever).
NonNegative = Annotated[Decimal, Field(ge=0, lt=Decimal("1e10"), allow_inf_nan=False)]
Id = Annotated[str, Field(max_length=255)]
Name = Annotated[str, Field(max_length=255)]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Times an event may carry. Outside them, the clock-skew arithmetic and the store's
columns would overflow (Go's zero time, 0001-01-01, is the careless client's usual one)."""
MAX_DEPTH = 32
"""How deep objects and lists may nest in an event; shops' events nest a few levels."""


class ProductProps(_Open):
    """A product as Segment's e-commerce spec describes it."""

    product_id: Id | None = Field(
        default=None, validation_alias=AliasChoices("product_id", "productId", "id", "sku")
    )
    name: str | None = Field(default=None, max_length=500)
    price: NonNegative | None = None
    quantity: int = Field(default=1, ge=0, le=1_000_000)
    brand: Name | None = None
    category: Name | None = None
    url: str | None = None
    image_url: str | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    cart_id: Id | None = None
    stock: int | None = Field(default=None, ge=0, le=2_000_000_000)
    """Not in Segment's spec: units in stock, for recommendations (0 = never shown)."""
    repurchase_days: int | None = Field(default=None, ge=1, le=LONGEST_CYCLE.days)
    """Not in Segment's spec: how many days one lasts, for the replenishment journey."""

    @model_validator(mode="before")
    @classmethod
    def _coerce_ids(cls, data: Any) -> Any:
        # SDKs send numeric ids as numbers; ids are strings everywhere in the store.
        if isinstance(data, dict):
            for key in ("product_id", "productId", "id", "sku", "cart_id"):
                if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool):
                    data = {**data, key: str(data[key])}
        return data


class OrderProps(_Open):
    order_id: Id | None = Field(default=None, validation_alias=AliasChoices("order_id", "orderId"))
    checkout_id: str | None = None
    cart_id: Id | None = None
    total: NonNegative | None = None
    revenue: NonNegative | None = None
    value: NonNegative | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    coupon: str | None = Field(default=None, max_length=64)
    products: list[ProductProps] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _coerce_ids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("order_id", "orderId", "checkout_id", "cart_id"):
                if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool):
                    data = {**data, key: str(data[key])}
        return data


class Traits(_Open):
    email: EmailStr | None = None
    first_name: Name | None = Field(
        default=None, validation_alias=AliasChoices("first_name", "firstName")
    )
    last_name: Name | None = Field(
        default=None, validation_alias=AliasChoices("last_name", "lastName")
    )
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    birthday: str | None = None
    """``1990-02-28``, ``--02-29`` (no year) or a timestamp; anything else is refused."""
    marketing_consent: bool | None = Field(
        default=None,
        validation_alias=AliasChoices("marketing_consent", "marketingConsent", "email_consent"),
    )

    @field_validator("birthday", mode="before")
    @classmethod
    def _a_date(cls, value: Any) -> Any:
        if value is None:
            return None
        text = value.isoformat() if isinstance(value, date | datetime) else value
        if parse_birthday(text) is None:
            raise ValueError("write a birthday as 1990-02-28, or --02-28 without the year")
        return text


_ID_KEYS = ("userId", "anonymousId", "previousId", "messageId", "user_id", "anonymous_id")


class SegmentEvent(_Open):
    """One Segment call: the envelope every type shares, plus each type's own part."""

    type: Literal["identify", "track", "page", "screen", "alias", "group"]
    message_id: str | None = Field(
        default=None, validation_alias=AliasChoices("messageId", "message_id"), max_length=255
    )
    user_id: str | None = Field(
        default=None, validation_alias=AliasChoices("userId", "user_id"), max_length=255
    )
    anonymous_id: str | None = Field(
        default=None, validation_alias=AliasChoices("anonymousId", "anonymous_id"), max_length=255
    )
    timestamp: datetime | None = None
    original_timestamp: datetime | None = Field(
        default=None, validation_alias=AliasChoices("originalTimestamp", "original_timestamp")
    )
    sent_at: datetime | None = Field(
        default=None, validation_alias=AliasChoices("sentAt", "sent_at")
    )
    context: dict[str, Any] = Field(default_factory=dict)
    event: str | None = Field(default=None, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    previous_id: str | None = Field(
        default=None, validation_alias=AliasChoices("previousId", "previous_id"), max_length=255
    )

    @model_validator(mode="before")
    @classmethod
    def _ids_as_strings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _ID_KEYS:
                if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
                    data = {**data, key: str(data[key])}
        return data

    @field_validator("context", "properties", "traits", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # Segment's spec and our OpenAPI schema allow null for these objects.
        return {} if value is None else value

    @field_validator("timestamp", "original_timestamp", "sent_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not in_range(value):
            raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
        return value

    def missing(self) -> list[tuple[str, str]]:
        """What the spec requires of this call and it lacks, by field path."""
        problems = []
        if not self.user_id and not self.anonymous_id:
            problems.append(("userId", "userId or anonymousId is required"))
        if self.type == "track" and not self.event:
            problems.append(("event", "the event name is required for track"))
        if self.type == "alias" and not self.previous_id:
            problems.append(("previousId", "required for alias"))
        return problems

    def happened_at(self, received_at: datetime) -> datetime:
        """When the event happened at the shop, as Segment computes it.

        Segment corrects a client's clock skew with ``receivedAt - (sentAt - originalTimestamp)``;
        a time in the future is taken as now.
        """
        if self.timestamp is not None:
            when = _aware(self.timestamp)
        elif self.original_timestamp is not None and self.sent_at is not None:
            when = received_at - (_aware(self.sent_at) - _aware(self.original_timestamp))
        elif self.original_timestamp is not None:
            when = _aware(self.original_timestamp)
        else:
            when = received_at
        return min(when, received_at)

    def identity_traits(self) -> Traits:
        """The traits a call carries: ``context.traits``, under an identify's own ``traits``.

        RudderStack's SDKs send an identify's traits in ``context.traits`` only.
        """
        shared = self.context.get("traits") or {}
        if self.type != "identify":
            return Traits.model_validate(shared)
        if not isinstance(shared, dict):
            shared = {}  # reported by parse_event; the call's own traits still count
        return Traits.model_validate({**shared, **self.traits})

    def product(self) -> ProductProps:
        return ProductProps.model_validate(self.properties)

    def order(self) -> OrderProps:
        return OrderProps.model_validate(self.properties)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def in_range(value: datetime) -> bool:
    """Whether ``value`` lies between :data:`EARLIEST` and :data:`LATEST`."""
    try:
        return EARLIEST <= _aware(value) < LATEST
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        return False


def _tree_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What no store can hold, by path: nesting deeper than :data:`MAX_DEPTH`, and text
    with a NUL or an unpaired surrogate (keys included). Iterative: depth costs no stack."""
    problems: list[tuple[str, str]] = []
    deep: set[str] = set()
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            if not _storable(value):
                problems.append((_path(loc), _BAD_TEXT))
            continue
        if not isinstance(value, Mapping | list):
            continue
        if len(loc) >= MAX_DEPTH:
            top = _path(loc[:1])
            if top not in deep:
                deep.add(top)
                problems.append((top, f"nested deeper than {MAX_DEPTH} levels"))
            continue
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and not _storable(key):
                problems.append((_path(loc) if loc else "", f"a key: {_BAD_TEXT}"))
                continue
            stack.append((item, (*loc, _printable(key) if isinstance(key, str) else key)))
    return sorted(problems)


_BAD_TEXT = "holds a NUL character or an unpaired surrogate, which no store can keep"


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")


_JSON = TypeAdapter(dict[str, Any])


def parse_event(data: Mapping[str, Any], *, default_type: str | None = None) -> SegmentEvent:
    """Validate one event; the checks that depend on the event name run here too.

    Args:
        data: the event as JSON-decoded from the SDK.
        default_type: the type implied by the endpoint (``/v1/track``) when the body omits it.

    Raises:
        EventError: listing every field that is wrong, by path.
    """
    if not isinstance(data, Mapping):
        raise EventError([("", "an event must be a JSON object")])
    if default_type and "type" not in data:
        data = {**data, "type": default_type}
    # Checked before validation: pydantic, the digest below and the store would each fail
    # on these with an error no client could act on.
    if problems := _tree_problems(data):
        raise EventError(problems)
    try:
        event = SegmentEvent.model_validate(data)
        if missing := event.missing():
            raise EventError(missing)
        if event.type == "identify":
            _check(lambda: Traits.model_validate(event.traits), "traits")
        if event.context.get("traits"):
            _check(lambda: Traits.model_validate(event.context["traits"]), "context.traits")
        if event.type == "track" and event.event in PRODUCT_EVENTS:
            _check(event.product, "properties")
        if event.type == "track" and event.event in ORDER_EVENTS:
            order = _check(event.order, "properties")
            if event.event in ORDER_ID_REQUIRED and not order.order_id:
                raise EventError([("properties.order_id", f"required for {event.event}")])
    except ValidationError as err:
        raise EventError([(_path(e["loc"]), _message(e)) for e in err.errors()]) from err
    if event.message_id is None:
        # Segment's own libraries always set messageId; for hand-made calls a digest of
        # the body makes the same call sent twice a duplicate, as it should be.
        body = json.dumps(_JSON.dump_python(dict(data), mode="json"), sort_keys=True)
        event.message_id = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    return event


def _check(build: Any, prefix: str) -> Any:
    try:
        return build()
    except ValidationError as err:
        raise EventError([(_path((prefix, *e["loc"])), _message(e)) for e in err.errors()]) from err


_FIELD_NAMES = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "message_id": "messageId",
    "sent_at": "sentAt",
    "original_timestamp": "originalTimestamp",
    "previous_id": "previousId",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            for piece in str(part).split("."):
                name = _FIELD_NAMES.get(piece, piece)
                out += f".{name}" if out else name
    return out


def _message(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
