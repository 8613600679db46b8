"""The Segment endpoints: ``POST /v1/batch``, ``/v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group`` and ``/v1/alias``, Segment's Tracking API shape, so any Segment
or RudderStack SDK works unchanged.

They take events through the same :class:`starter.Intake` as the Python call, each body read
by hand (gzip, Segment's size limits, a refusal per bad event). A 2xx means every event it
lists as accepted is in the store and Temporal has what it starts or signals; when either
cannot be reached the answer is 503, which SDKs retry, and ``messageId`` makes the retry a
no-op for what went in. Apart from the app's assembly (``api.py``), which mounts this router
beside the others.
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import SkipJsonSchema

from starter.events import EARLIEST, LATEST, EventError, SegmentEvent, in_range, parse_event
from starter.intake import Intake, IntakeResult, IntakeUnavailable
from triggermail.web.api_metrics import ApiMetrics
from triggermail.web.errors import (
    Problem,
    Refused,
    SafeJSONResponse,
    request_id,
    see_log,
    unauthorized,
    unavailable,
)

# The API's one log, as before its routers had files of their own: filters name it.
log = logging.getLogger("triggermail.web.api")

MAX_EVENT_BYTES = 32 * 1024
"""Segment's limit for one call, alone or inside a batch."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for one batch request."""

CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")

_REF_TEMPLATE = "#/components/schemas/{model}"


# -- wire models -------------------------------------------------------------------------


class FieldProblem(BaseModel):
    field: str = Field(description="Path in the event, e.g. `traits.email`; empty for the whole.")
    message: str


class Refusal(BaseModel):
    index: int = Field(description="Position of the event in the batch (0 for single calls).")
    messageId: str | None
    status: Literal[400, 413] = Field(description="413: over 32 KB; 400: anything else.")
    errors: list[FieldProblem]


class EventResult(BaseModel):
    index: int
    messageId: str
    status: Literal["accepted", "duplicate"] = Field(
        description="duplicate: this messageId was taken before; nothing changed."
    )
    journeys: list[str] = Field(description="Workflow IDs the event started or signalled.")


class IngestReply(Problem):
    """Segment's ``{"success": true}``, plus what happened to each event."""

    accepted: int = Field(default=0, description="Events stored and routed (not duplicates).")
    duplicates: int = 0
    results: list[EventResult] = Field(default_factory=list)
    refused: list[Refusal] = Field(
        default_factory=list, description="Events not taken, by index, with each bad field."
    )


class _Call(BaseModel):
    """A Segment call (see Segment's HTTP Tracking API spec); unknown fields are kept."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        },
    )

    userId: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=255)
    anonymousId: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=255)
    messageId: str | None = Field(
        default=None,
        max_length=255,
        description="Makes the call idempotent; a digest of the body when absent.",
    )
    timestamp: datetime | None = Field(
        default=None, description="When it happened; drives every journey timing."
    )
    context: dict[str, Any] | None = None


class TrackCall(_Call):
    event: str = Field(min_length=1, max_length=255, examples=["Checkout Started"])
    properties: dict[str, Any] | None = None


class IdentifyCall(_Call):
    traits: dict[str, Any] | None = Field(
        default=None,
        description="email, firstName, lastName, locale, timezone, birthday, marketing_consent.",
    )


class PageCall(_Call):
    name: str | None = None
    properties: dict[str, Any] | None = None


class GroupCall(_Call):
    groupId: str | None = None
    traits: dict[str, Any] | None = None


class AliasCall(_Call):
    previousId: str = Field(min_length=1, max_length=255)


class BatchCall(_Call):
    type: Literal["track", "identify", "page", "screen", "group", "alias"]
    event: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    previousId: str | None = None


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[BatchCall]
    context: dict[str, Any] | None = Field(
        default=None, description="Merged into each event's context (the event's keys win)."
    )
    sentAt: datetime | None = None


_CALL_MODELS: dict[str, type[BaseModel]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": PageCall,
    "group": GroupCall,
    "alias": AliasCall,
}


class _BodyRefused(Refused):
    """A body refused as a whole (malformed, too large): the reply is an
    :class:`IngestReply` with nothing accepted, the shape the SDKs read for events."""

    def reply(self) -> Problem:
        return IngestReply(code=self.code, message=self.message)


# -- the router --------------------------------------------------------------------------

_basic = HTTPBasic(auto_error=False, description="User name: the write key; no password.")

_INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Taken: every event not listed in `refused` is durable."},
    400: {"model": IngestReply, "description": "Malformed body, or every event refused."},
    401: {"model": Problem, "description": "No write key, or a wrong one."},
    413: {"model": IngestReply, "description": "Over 32 KB an event or 500 KB a batch."},
    503: {"model": Problem, "description": "Store or Temporal unreachable: retry."},
}


def segment_router(*, write_key: bytes | None) -> APIRouter:
    """The intake endpoints; they read the intake and metrics from ``app.state``.

    Their bodies are read by hand, so /openapi.json needs :func:`body_components` too.
    """
    router = APIRouter()

    def need_write_key(
        credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> None:
        if write_key is None:
            raise unauthorized("this server has no TRIGGERMAIL_WRITE_KEY set; it takes no events")
        if credentials is None:
            raise unauthorized("send the write key as the Basic auth user name")
        if not hmac.compare_digest(credentials.username.encode(), write_key):
            raise unauthorized("wrong write key")

    @router.post(
        "/v1/batch",
        response_model=IngestReply,
        responses=_INGEST_RESPONSES,
        dependencies=[Depends(need_write_key)],
        openapi_extra=_body_schema(BatchBody),
        summary="Many calls in one request (what the SDKs send)",
        tags=["events"],
    )
    async def batch(request: Request) -> JSONResponse:
        body, size = await _read_json(request, limit=MAX_BATCH_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise _BodyRefused(400, "invalid_batch", 'batch: the body must be {"batch": [events]}')
        shared = body.get("context")
        if shared is not None and not isinstance(shared, dict):
            raise _BodyRefused(400, "invalid_batch", "context: must be an object")
        if (problem := _sent_at_problem(body.get("sentAt"))) is not None:
            raise _BodyRefused(400, "invalid_batch", f"sentAt: {problem}")
        return await _ingest(
            request.app.state.intake,
            request.app.state.metrics,
            [_merged(raw, shared, body.get("sentAt")) for raw in body["batch"]],
            # A body under the limit cannot hold an event over it.
            check_size=size > MAX_EVENT_BYTES,
        )

    for call_type in CALL_TYPES:
        _add_call_route(router, call_type, need_write_key)
    return router


def body_components() -> dict[str, Any]:
    """The schemas the request bodies refer to, for /openapi.json's components."""
    components: dict[str, Any] = {}
    models: list[type[BaseModel]] = [BatchBody, *(_CALL_MODELS[t] for t in CALL_TYPES)]
    for model in models:
        components.update(model.model_json_schema(ref_template=_REF_TEMPLATE).get("$defs", {}))
    return components


_SENT_AT = TypeAdapter(datetime)


def _sent_at_problem(value: Any) -> str | None:
    if value is None:
        return None
    try:
        when = _SENT_AT.validate_python(value)
    except ValidationError as err:
        return str(err.errors()[0]["msg"])
    if not in_range(when):
        return f"must be between {EARLIEST.year} and {LATEST.year}"
    return None


def _add_call_route(router: APIRouter, call_type: str, need_write_key: Callable[..., None]) -> None:
    async def call(request: Request) -> JSONResponse:
        body, _ = await _read_json(request, limit=MAX_EVENT_BYTES)
        if isinstance(body, dict):
            # The endpoint names the call, as Segment's does.
            body = {**body, "type": call_type}
        return await _ingest(
            request.app.state.intake, request.app.state.metrics, [body], check_size=False
        )

    router.add_api_route(
        f"/v1/{call_type}",
        call,
        methods=["POST"],
        response_model=IngestReply,
        responses=_INGEST_RESPONSES,
        dependencies=[Depends(need_write_key)],
        openapi_extra=_body_schema(_CALL_MODELS[call_type]),
        summary=f"One {call_type} call",
        name=call_type,
        tags=["events"],
    )


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    # The body is read by hand (gzip, size limits, per-event errors), so FastAPI cannot
    # see its type; the schema is declared here so /openapi.json documents it anyway (the
    # models it refers to are in body_components()).
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _merged(raw: Any, shared: dict[str, Any] | None, sent_at: Any) -> Any:
    """A batch's event with the batch's context and sentAt under its own."""
    if not isinstance(raw, dict):
        return raw
    if shared:
        own = raw.get("context")
        raw = {**raw, "context": {**shared, **own} if isinstance(own, dict) else own or shared}
    if sent_at is not None and "sentAt" not in raw:
        raw = {**raw, "sentAt": sent_at}
    return raw


async def _read_json(request: Request, *, limit: int) -> tuple[Any, int]:
    """The JSON body (gunzipped) and its size in bytes."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise _BodyRefused(
            400, "invalid_encoding", f"Content-Encoding {encoding!r}: send gzip or none"
        )
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        # Compressed JSON is smaller than the JSON; this only stops an endless upload.
        if len(raw) > limit:
            raise _BodyRefused(413, "too_large", f"the body is over {limit // 1024} KB")
    data = bytes(raw)
    if encoding == "gzip":
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflate.decompress(data, limit + 1)
        except zlib.error as err:
            raise _BodyRefused(400, "invalid_gzip", f"the body is not valid gzip: {err}") from err
        if len(data) > limit:
            raise _BodyRefused(413, "too_large", f"the body is over {limit // 1024} KB unzipped")
        if not inflate.eof:
            raise _BodyRefused(400, "invalid_gzip", "the gzip body is cut short")
    try:
        return json.loads(data), len(data)
    except (ValueError, RecursionError) as err:
        raise _BodyRefused(400, "invalid_json", f"the body is not valid JSON: {err}") from err


async def _ingest(
    intake: Intake, metrics: ApiMetrics, raws: list[Any], *, check_size: bool
) -> JSONResponse:
    refused: list[Refusal] = []
    parsed: list[tuple[int, SegmentEvent]] = []
    for index, raw in enumerate(raws):
        message_id = _message_id(raw)
        if check_size and isinstance(raw, dict):
            size = len(json.dumps(raw, separators=(",", ":")).encode())
            if size > MAX_EVENT_BYTES:
                refused.append(
                    Refusal(
                        index=index,
                        messageId=message_id,
                        status=413,
                        errors=[FieldProblem(field="", message=f"{size} bytes, over 32 KB")],
                    )
                )
                continue
        try:
            parsed.append((index, parse_event(raw)))
        except EventError as err:
            refused.append(_refusal(index, message_id, err))
        except (ValueError, ArithmeticError, RecursionError) as err:
            # Whatever else an event trips on is its own fault; the batch goes on without it.
            log.warning("request %s: event %d unreadable: %r", request_id.get(), index, err)
            problem = EventError([("", f"the event cannot be read ({see_log()})")])
            refused.append(_refusal(index, message_id, problem))

    try:
        outcomes = await intake.submit_many([event for _, event in parsed])
    except IntakeUnavailable as err:
        log.warning("request %s: answering 503: %s", request_id.get(), err)
        metrics.unavailable.inc()
        raise Refused(503, "unavailable", unavailable()) from err

    results = []
    for (index, event), outcome in zip(parsed, outcomes, strict=True):
        if isinstance(outcome, EventError):
            refused.append(_refusal(index, event.message_id, outcome))
        else:
            results.append(_result(index, outcome))
    refused.sort(key=lambda r: r.index)
    types = {index: event.type for index, event in parsed}
    for result in results:
        metrics.events.labels(types[result.index], result.status).inc()
    for refusal in refused:
        raw = raws[refusal.index]
        # Only known call types become labels: a label per made-up value would never end.
        claimed = raw.get("type") if isinstance(raw, dict) else None
        known = claimed if claimed in CALL_TYPES else "unknown"
        metrics.events.labels(types.get(refusal.index, known), "refused").inc()
    reply = IngestReply(
        success=bool(results) or not refused,
        code="ok",
        message="",
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        results=results,
        refused=refused,
    )
    status = 200
    if refused and not results:
        # Nothing went in: a 4xx, which SDKs do not retry (it could never succeed). With
        # some events in, the answer is 200 so the SDK does not resend them for nothing.
        status = 413 if all(r.status == 413 for r in refused) else 400
        reply.code = "too_large" if status == 413 else "invalid_events"
    elif refused:
        reply.code = "partly_refused"
    reply.message = _message(reply, len(raws))
    return SafeJSONResponse(reply.model_dump(), status_code=status)


def _message_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("messageId")
        return value if isinstance(value, str) else None
    return None


def _refusal(index: int, message_id: str | None, err: EventError) -> Refusal:
    return Refusal(
        index=index,
        messageId=message_id,
        status=400,
        errors=[FieldProblem(field=path, message=message) for path, message in err.problems],
    )


def _result(index: int, outcome: IntakeResult) -> EventResult:
    return EventResult(
        index=index,
        messageId=outcome.message_id,
        status="duplicate" if outcome.duplicate else "accepted",
        journeys=[*outcome.started, *outcome.signalled],
    )


def _message(reply: IngestReply, total: int) -> str:
    taken = reply.accepted + reply.duplicates
    head = f"{taken} of {total} events taken"
    if reply.duplicates:
        head += f" ({reply.duplicates} seen before)"
    if not reply.refused:
        return head
    problems = "; ".join(
        f"event {r.index}: "
        + ", ".join(f"{e.field}: {e.message}" if e.field else e.message for e in r.errors)
        for r in reply.refused
    )
    return f"{head}; refused {problems}"
