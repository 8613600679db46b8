"""The API's one error shape, :class:`Problem`, and everything that answers with it.

Every error reply, from any route, is a :class:`Problem`: a :class:`Refused` a route
raises, FastAPI's own 4xx (404, 405, a malformed request's 422, answered 400 here) and a
bug's 500. Every reply carries an ``X-Request-Id`` that the log repeats beside what a
client is not shown (driver text). Apart from the routers so each of them answers errors
the same way without importing the app that mounts it.
"""

from __future__ import annotations

import json
import logging
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The API's one log, as before its routers had files of their own: filters name it.
log = logging.getLogger("triggermail.web.api")

RETRY_AFTER_S = 1
"""Sent with 503. Segment's SDK then keeps retrying for up to 30 minutes instead of giving up
after ten backoffs; RudderStack's ignores it and backs off on its own."""

request_id: ContextVar[str] = ContextVar("request_id", default="-")
"""The request being answered, for log lines: its ``X-Request-Id``."""


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text a client sent with an unpaired surrogate (echoed in a
    refusal) becomes ``?`` instead of failing the reply."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8", "replace")


class Problem(BaseModel):
    """The body of every error; Segment's SDKs log ``code`` and ``message``."""

    success: bool = False
    code: str
    message: str


class Refused(Exception):
    """A request refused as a whole, before any event was looked at."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def reply(self) -> Problem:
        """The body answered; a route whose replies say more returns a richer one."""
        return Problem(code=self.code, message=self.message)


_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def add_error_handlers(app: FastAPI) -> None:
    """Answer :class:`Refused`, FastAPI's HTTP errors and its 422 as a :class:`Problem`."""

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return SafeJSONResponse(exc.reply().model_dump(), status_code=exc.status, headers=headers)

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


class RequestGuard:
    """Names every request (``X-Request-Id``) and refuses a body announced over
    ``max_body_bytes`` before reading any of it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
            elif int(length) > self.max_body_bytes:
                await answer(413, "too_large", f"the body is over {_kb(self.max_body_bytes)}")
            else:
                await self.app(scope, receive, named)
        except Exception:
            # A bug: the log has the traceback under the request's id, the client the id only.
            log.exception("request %s: %s %s failed", rid, scope["method"], scope["path"])
            if not started:
                await answer(500, "server_error", f"internal error: {see_log()}")
        finally:
            request_id.reset(token)


def _kb(size: int) -> str:
    return f"{size // 1024} KB"


def see_log() -> str:
    """Where the details a client is not shown are: the log, under this request's id."""
    return f"the server's log has it under request id {request_id.get()}"


def unavailable() -> str:
    """The message of a 503."""
    return f"the store or Temporal is unavailable, retry ({see_log()})"


def unauthorized(message: str) -> HTTPException:
    """A 401 asking for a key (answered as a :class:`Problem` by the handlers)."""
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Basic realm="triggermail"'})


def errors_in_one_shape(schema: dict[str, Any]) -> None:
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
