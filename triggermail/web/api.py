"""The HTTP app's assembly: :func:`create_app` builds the API from its settings.

Its lifespan connects the store and Temporal and builds the intake; it mounts a router per
resource (the Segment endpoints in :mod:`~triggermail.web.segment`, the customer card in
:mod:`~triggermail.web.customers`, metrics, the outbox viewer, unsubscribe, the survey, the
SendGrid webhook) behind one error shape (:mod:`~triggermail.web.errors`), and
/openapi.json documents them all. :func:`serve` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from starter.intake import Intake
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.settings import Settings
from triggermail.store import make_engine, make_session_factory, utcnow
from triggermail.temporal import connect
from triggermail.web.api_metrics import ApiMetrics
from triggermail.web.customers import customers_router
from triggermail.web.errors import (
    RequestGuard,
    SafeJSONResponse,
    add_error_handlers,
    errors_in_one_shape,
)
from triggermail.web.outbox_viewer import outbox_router
from triggermail.web.segment import MAX_BATCH_BYTES, body_components, segment_router
from triggermail.web.survey import survey_router
from triggermail.web.unsubscribe import follow_up_forever, unsubscribe_router
from triggermail.web.webhooks import MAX_WEBHOOK_BYTES, sendgrid_webhook_router

log = logging.getLogger("triggermail.web.api")

MAX_BODY_BYTES = max(MAX_BATCH_BYTES, MAX_WEBHOOK_BYTES)
"""No route reads more: a request announcing a longer body is refused before any of it is
read. Each route then holds its own limit while it reads (chunked bodies announce none)."""


class ApiStartError(Exception):
    """The API could not start (port taken, Temporal unreachable); the log says why."""


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

    add_error_handlers(app)
    app.include_router(segment_router(write_key=write_key))
    app.include_router(customers_router(admin_key=admin_key))
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.state.clock = now
    app.add_middleware(metrics.middleware())
    app.add_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)
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
            components.update(body_components())
            errors_in_one_shape(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _key(secret: SecretStr | None) -> bytes | None:
    value = secret.get_secret_value() if secret else ""
    return value.encode() if value else None  # an empty variable sets no key


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
