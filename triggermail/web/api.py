"""The HTTP intake: Segment's Tracking API shape, so any Segment or RudderStack SDK works unchanged.

``POST /v1/batch``, ``/v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen``,
``/v1/group`` and ``/v1/alias`` take events through the same :class:`starter.Intake`
as the Python call. A 2xx means every event it lists as accepted is in the store and
Temporal has what it starts or signals; when either cannot be reached the answer is
503, which SDKs retry, and ``messageId`` makes the retry a no-op for what went in.
``GET /v1/customers/{id}`` serves the customer card to operators.

Every error reply, from any route, is one shape, :class:`Problem`; every reply carries an
``X-Request-Id`` that the log repeats beside what a client is not shown (driver text).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from starter.events import EARLIEST, LATEST, EventError, SegmentEvent, in_range, parse_event
from starter.intake import Intake, IntakeResult, IntakeUnavailable
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.settings import Settings
from triggermail.store import make_engine, make_session_factory, utcnow
from triggermail.temporal import connect
from triggermail.web.api_metrics import ApiMetrics
from triggermail.web.customer_card import CustomerCard, load_card
from triggermail.web.outbox_viewer import outbox_router
from triggermail.web.survey import survey_router
from triggermail.web.unsubscribe import follow_up_forever, unsubscribe_router
from triggermail.web.webhooks import MAX_WEBHOOK_BYTES, sendgrid_webhook_router

log = logging.getLogger("triggermail.web.api")

MAX_EVENT_BYTES = 32 * 1024
"""Segment's limit for one call, alone or inside a batch."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for one batch request."""
MAX_BODY_BYTES = max(MAX_BATCH_BYTES, MAX_WEBHOOK_BYTES)
"""No route reads more: a request announcing a longer body is refused before any of it is
read. Each route then holds its own limit while it reads (chunked bodies announce none)."""
RETRY_AFTER_S = 1
"""Sent with 503. Segment's SDK then keeps retrying for up to 30 minutes instead of giving up
after ten backoffs; RudderStack's ignores it and backs off on its own."""

CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")


class ApiStartError(Exception):
    """The API could not start (port taken, Temporal unreachable); the log says why."""


request_id: ContextVar[str] = ContextVar("request_id", default="-")
"""The request being answered, for log lines: its ``X-Request-Id``."""


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text a client sent with an unpaired surrogate (echoed in a
    refusal) becomes ``?`` instead of failing the reply."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8", "replace")


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


class Problem(BaseModel):
    """The body of every error; Segment's SDKs log ``code`` and ``message``."""

    success: bool = False
    code: str
    message: str


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


class _Refused(Exception):
    """A request refused as a whole, before any event was looked at."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- the app -----------------------------------------------------------------------------

_basic = HTTPBasic(auto_error=False, description="User name: the write key; no password.")
_admin_basic = HTTPBasic(
    auto_error=False, scheme_name="AdminBasic", description="User name: the admin key."
)
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminBearer", description="Token: the admin key."
)


def create_app(
    settings: Settings,
    *,
    client: Client | None = None,
    journeys: JourneysConfig | None = None,
    session_factory: sessionmaker[Session] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The API; what is not handed in is built in its lifespan from ``settings``.

    The Temporal client is connected once there (``TEMPORAL_*``), unless ``client`` is given.
    ``clock`` is every route's "now" (tests hand in theirs).
    """
    now = clock or utcnow
    write_key = _key(settings.write_key)
    admin_key = _key(settings.admin_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        sessions = session_factory
        if sessions is None:
            engine = make_engine(settings.database_url)
            sessions = make_session_factory(engine)
        temporal = client or await connect()
        app.state.sessions = sessions
        app.state.temporal = temporal
        app.state.intake = Intake(
            session_factory=sessions,
            client=temporal,
            journeys=journeys or load_journeys(settings.journeys),
            task_queue=settings.task_queue,
            clock=now,
        )
        if write_key is None:
            log.warning("TRIGGERMAIL_WRITE_KEY is not set: every event will be refused (401)")
        # Unsubscribes answered while Temporal was away: their journeys end when it is back.
        follow_ups = asyncio.create_task(
            follow_up_forever(temporal, sessions, clock=clock or utcnow)
        )
        try:
            yield
        finally:
            follow_ups.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow_ups
            if engine is not None:
                engine.dispose()

    app = FastAPI(
        default_response_class=SafeJSONResponse,
        title="triggermail",
        summary="Trigger e-mail journeys from Segment-spec events.",
        description=(
            "Segment's HTTP Tracking API: point any Segment or RudderStack SDK at this host "
            "with the write key. A 2xx means every accepted event is stored and its journeys "
            "have it; 503 means retry (messageId makes retries safe)."
        ),
        version="1",
        lifespan=lifespan,
    )

    def need_write_key(
        credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> None:
        if write_key is None:
            raise _unauthorized("this server has no TRIGGERMAIL_WRITE_KEY set; it takes no events")
        if credentials is None:
            raise _unauthorized("send the write key as the Basic auth user name")
        if not hmac.compare_digest(credentials.username.encode(), write_key):
            raise _unauthorized("wrong write key")

    def need_admin_key(
        basic: Annotated[HTTPBasicCredentials | None, Depends(_admin_basic)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
    ) -> None:
        if admin_key is None:
            raise _unauthorized("the customer card is off: set TRIGGERMAIL_ADMIN_KEY")
        given = basic.username if basic else bearer.credentials if bearer else None
        if given is None:
            raise _unauthorized("send the admin key as a Bearer token or Basic auth user name")
        if not hmac.compare_digest(given.encode(), admin_key):
            raise _unauthorized("wrong admin key")

    ingest_responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Taken: every event not listed in `refused` is durable."},
        400: {"model": IngestReply, "description": "Malformed body, or every event refused."},
        401: {"model": Problem, "description": "No write key, or a wrong one."},
        413: {"model": IngestReply, "description": "Over 32 KB an event or 500 KB a batch."},
        503: {"model": Problem, "description": "Store or Temporal unreachable: retry."},
    }

    body_components: dict[str, Any] = {}

    @app.post(
        "/v1/batch",
        response_model=IngestReply,
        responses=ingest_responses,
        dependencies=[Depends(need_write_key)],
        openapi_extra=_body_schema(BatchBody, body_components),
        summary="Many calls in one request (what the SDKs send)",
        tags=["events"],
    )
    async def batch(request: Request) -> JSONResponse:
        body, size = await _read_json(request, limit=MAX_BATCH_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise _Refused(400, "invalid_batch", 'batch: the body must be {"batch": [events]}')
        shared = body.get("context")
        if shared is not None and not isinstance(shared, dict):
            raise _Refused(400, "invalid_batch", "context: must be an object")
        if (problem := _sent_at_problem(body.get("sentAt"))) is not None:
            raise _Refused(400, "invalid_batch", f"sentAt: {problem}")
        return await _ingest(
            request.app.state.intake,
            request.app.state.metrics,
            [_merged(raw, shared, body.get("sentAt")) for raw in body["batch"]],
            # A body under the limit cannot hold an event over it.
            check_size=size > MAX_EVENT_BYTES,
        )

    for call_type in CALL_TYPES:
        _add_call_route(app, call_type, ingest_responses, need_write_key, body_components)

    @app.get(
        "/v1/customers/{customer_id}",
        response_model=CustomerCard,
        responses={
            401: {"model": Problem, "description": "No admin key, or a wrong one."},
            404: {"model": Problem, "description": "No such customer."},
            503: {"model": Problem, "description": "Store unreachable."},
        },
        dependencies=[Depends(need_admin_key)],
        summary="The customer card: profile, consent, events, e-mails, running journeys",
        tags=["customers"],
    )
    async def customer(
        customer_id: str,
        request: Request,
        response: Response,
        events: Annotated[int, Query(ge=1, le=1000, description="Newest events to show.")] = 100,
    ) -> CustomerCard:
        try:
            card = await load_card(
                customer_id,
                session_factory=request.app.state.sessions,
                client=request.app.state.temporal,
                events=events,
                clock=request.app.state.clock,
            )
        except DBAPIError as err:
            log.warning("request %s: customer card: store unavailable: %s", request_id.get(), err)
            raise _Refused(503, "unavailable", _unavailable()) from err
        if card is None:
            raise _Refused(404, "not_found", f"no customer {customer_id!r}")
        # One customer's personal data: no cache or proxy may keep it.
        response.headers["Cache-Control"] = "no-store"
        return card

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> JSONResponse:
        model: Problem = (
            Problem(code=exc.code, message=exc.message)
            if exc.status in (401, 404, 503)
            else IngestReply(code=exc.code, message=exc.message)
        )
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return SafeJSONResponse(model.model_dump(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = Problem(code=_CODES.get(exc.status_code, "error"), message=str(exc.detail))
        return SafeJSONResponse(
            problem.model_dump(), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 has another shape; a client gets the one every error has.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        problem = Problem(code="invalid_request", message=problems)
        return SafeJSONResponse(problem.model_dump(), status_code=400)

    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.state.clock = now
    app.add_middleware(metrics.middleware())
    app.add_middleware(_RequestGuard)
    app.include_router(metrics.router())
    if settings.mail_transport == "outbox":
        app.include_router(outbox_router(settings.outbox_dir, admin_key=admin_key))
    app.include_router(unsubscribe_router(settings, clock=now))
    app.include_router(survey_router(settings, clock=now))
    if settings.sendgrid_webhook_public_key:
        key = settings.sendgrid_webhook_public_key
        app.include_router(sendgrid_webhook_router(key, clock=now))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body_components)
            _errors_in_one_shape(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class _RequestGuard:
    """Names every request (``X-Request-Id``) and refuses a body announced over
    :data:`MAX_BODY_BYTES` before reading any of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        token = request_id.set(rid)
        started = False

        async def named(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", [])]}
                message["headers"].append((b"x-request-id", rid.encode()))
            await send(message)

        async def answer(status: int, code: str, message: str) -> None:
            problem = Problem(code=code, message=message).model_dump()
            await SafeJSONResponse(problem, status_code=status)(scope, receive, named)

        try:
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit():
                await answer(400, "invalid_request", "Content-Length: not a number")
            elif int(length) > MAX_BODY_BYTES:
                await answer(413, "too_large", f"the body is over {_kb(MAX_BODY_BYTES)}")
            else:
                await self.app(scope, receive, named)
        except Exception:
            # A bug: the log has the traceback under the request's id, the client the id only.
            log.exception("request %s: %s %s failed", rid, scope["method"], scope["path"])
            if not started:
                await answer(500, "server_error", f"internal error: {_see_log()}")
        finally:
            request_id.reset(token)


def _kb(size: int) -> str:
    return f"{size // 1024} KB"


def _see_log() -> str:
    return f"the server's log has it under request id {request_id.get()}"


def _unavailable() -> str:
    return f"the store or Temporal is unavailable, retry ({_see_log()})"


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


def _errors_in_one_shape(schema: dict[str, Any]) -> None:
    """FastAPI documents 422 with its own body; ours answer 400 with :class:`Problem`."""
    schemas = schema["components"]["schemas"]
    schemas.setdefault("Problem", Problem.model_json_schema())
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is None:
                continue
            bad = responses.setdefault("400", {"description": "A malformed request."})
            content = bad.setdefault("content", {})
            if not content:
                # A page's own 400 (an unsubscribe link we did not sign) is the page.
                content["text/html"] = {"schema": {"type": "string"}}
            content.setdefault(
                "application/json", {"schema": {"$ref": "#/components/schemas/Problem"}}
            )
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _add_call_route(
    app: FastAPI,
    call_type: str,
    responses: dict[int | str, dict[str, Any]],
    need_write_key: Callable[..., None],
    components: dict[str, Any],
) -> None:
    async def call(request: Request) -> JSONResponse:
        body, _ = await _read_json(request, limit=MAX_EVENT_BYTES)
        if isinstance(body, dict):
            # The endpoint names the call, as Segment's does.
            body = {**body, "type": call_type}
        return await _ingest(
            request.app.state.intake, request.app.state.metrics, [body], check_size=False
        )

    app.add_api_route(
        f"/v1/{call_type}",
        call,
        methods=["POST"],
        response_model=IngestReply,
        responses=responses,
        dependencies=[Depends(need_write_key)],
        openapi_extra=_body_schema(_CALL_MODELS[call_type], components),
        summary=f"One {call_type} call",
        name=call_type,
        tags=["events"],
    )


def _body_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    # The body is read by hand (gzip, size limits, per-event errors), so FastAPI cannot
    # see its type; the schema is declared here so /openapi.json documents it anyway.
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
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
        raise _Refused(400, "invalid_encoding", f"Content-Encoding {encoding!r}: send gzip or none")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        # Compressed JSON is smaller than the JSON; this only stops an endless upload.
        if len(raw) > limit:
            raise _Refused(413, "too_large", f"the body is over {limit // 1024} KB")
    data = bytes(raw)
    if encoding == "gzip":
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflate.decompress(data, limit + 1)
        except zlib.error as err:
            raise _Refused(400, "invalid_gzip", f"the body is not valid gzip: {err}") from err
        if len(data) > limit:
            raise _Refused(413, "too_large", f"the body is over {limit // 1024} KB unzipped")
        if not inflate.eof:
            raise _Refused(400, "invalid_gzip", "the gzip body is cut short")
    try:
        return json.loads(data), len(data)
    except (ValueError, RecursionError) as err:
        raise _Refused(400, "invalid_json", f"the body is not valid JSON: {err}") from err


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
            problem = EventError([("", f"the event cannot be read ({_see_log()})")])
            refused.append(_refusal(index, message_id, problem))

    try:
        outcomes = await intake.submit_many([event for _, event in parsed])
    except IntakeUnavailable as err:
        log.warning("request %s: answering 503: %s", request_id.get(), err)
        metrics.unavailable.inc()
        raise _Refused(503, "unavailable", _unavailable()) from err

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


def _key(secret: SecretStr | None) -> bytes | None:
    value = secret.get_secret_value() if secret else ""
    return value.encode() if value else None  # an empty variable sets no key


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Basic realm="triggermail"'})


async def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, client: Client | None = None
) -> None:
    """Run the API with uvicorn in the running event loop until it is told to stop.

    Raises:
        ApiStartError: the port is taken or the app could not start (Temporal unreachable).
    """
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=client),
            host=host,
            port=port,
            log_level="info",
            server_header=False,
        )
    )
    try:
        await server.serve()
    except SystemExit as err:
        # uvicorn exits the process when it cannot bind; a caller running other things
        # in the same loop (``triggermail dev``) gets an exception instead.
        raise ApiStartError(f"{host}:{port}: see the log above") from err
    if not server.started:
        raise ApiStartError(f"{host}:{port}: see the log above")
