"""The HTTP API wired to a :class:`Shop`: in process for most tests, on loopback for real clients.

The app gets the shop's store, journeys, Temporal client (the session's time-skipping
server) and clock, so an event posted over HTTP runs the same journey the Python
intake would, and the shop's worker sends its e-mails.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from triggermail.web.api import create_app

WRITE_KEY = "wk-shop-test"
ADMIN_KEY = "admin-shop-test"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path) as shop:
        yield shop


def app_for(
    shop: Shop,
    *,
    client: Client | None = None,
    session_factory: sessionmaker[Session] | None = None,
    webhook_key: str | None = None,
) -> FastAPI:
    settings = shop.settings.model_copy(
        update={
            "write_key": SecretStr(WRITE_KEY),
            "admin_key": SecretStr(ADMIN_KEY),
            "sendgrid_webhook_public_key": webhook_key,
        }
    )
    return create_app(
        settings,
        client=client or shop.env.client,
        journeys=shop.journeys,
        session_factory=session_factory or shop.sessions,
        clock=shop.now_sync,
    )


class Api:
    """An HTTP client for the app that keeps the shop's clock on the server's time."""

    def __init__(self, http: httpx.AsyncClient, shop: Shop) -> None:
        self.http = http
        self.shop = shop

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        await self.shop.tick()
        if body is not None:
            kwargs["json"] = body
        return await self.http.post(path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        await self.shop.tick()
        return await self.http.get(path, **kwargs)


@asynccontextmanager
async def in_process(app: FastAPI, shop: Shop) -> AsyncIterator[Api]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://triggermail.test",
            headers={"Authorization": basic(WRITE_KEY)},
        ) as http,
    ):
        yield Api(http, shop)


@pytest.fixture
async def api(shop: Shop) -> AsyncIterator[Api]:
    async with in_process(app_for(shop), shop) as api:
        yield api


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port, in this event loop; yields its URL.

    Clients that block (the SDKs) must run in a thread so this loop can serve them.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
