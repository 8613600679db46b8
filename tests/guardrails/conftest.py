"""A shop and its API, for the unsubscribe pages and SendGrid's webhook."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from triggermail.web.api import create_app

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
"""Stands in for SendGrid's: it signs webhook bodies the way SendGrid does."""
PUBLIC_KEY = base64.b64encode(
    SIGNING_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
"""As SendGrid shows it under Mail Settings → Signed Event Webhook: base64 of the DER key."""


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path) as shop:
        yield shop


@pytest.fixture
async def http(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with shop_api(shop) as client:
        yield client


@asynccontextmanager
async def shop_api(shop: Shop, **client: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the shop's store, Temporal and clock, with the webhook's key configured;
    ``client``: more of ``httpx.AsyncClient``'s options (``auth``, ``timeout``)."""
    settings = shop.settings.model_copy(update={"sendgrid_webhook_public_key": PUBLIC_KEY})
    app = create_app(
        settings,
        client=shop.env.client,
        journeys=shop.journeys,
        session_factory=shop.sessions,
        clock=shop.now_sync,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://triggermail.test", **client
        ) as http,
    ):
        yield http
