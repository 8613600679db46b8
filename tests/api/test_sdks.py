"""Segment's and RudderStack's Python SDKs, unchanged, against triggermail on loopback.

Each SDK sends identify + Checkout Started the way a shop's backend would, and the
abandoned-cart journey starts. When the store or Temporal is down for the first
requests the API answers 503, the SDK retries on its own, and every event lands once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.api.conftest import WRITE_KEY, app_for, serving
from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from triggermail.store import Event

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}

Sdk = Callable[[str, list[Exception]], Any]


def segment(url: str, errors: list[Exception]) -> SegmentClient:
    return SegmentClient(
        WRITE_KEY,
        host=url,
        gzip=True,
        upload_interval=0.05,
        on_error=lambda err, _batch: errors.append(err),
    )


def rudderstack(url: str, errors: list[Exception]) -> RudderClient:
    return RudderClient(
        WRITE_KEY,
        host=url,
        upload_interval=0.05,
        on_error=lambda err, _batch: errors.append(err),
    )


def shop_backend(sdk: Any, now: datetime) -> None:
    """What a shop's Python backend does when Ana starts checking out."""
    sdk.identify(
        "c-1",
        {"email": "ana@example.com", "firstName": "Ana", "marketing_consent": True},
        timestamp=now,
    )
    sdk.track(
        "c-1",
        "Checkout Started",
        {"cart_id": "k-1", "currency": "EUR", "products": [TEE]},
        timestamp=now,
    )
    sdk.flush()
    sdk.join()


async def play(shop: Shop, url: str, make: Sdk) -> list[Exception]:
    errors: list[Exception] = []
    sdk = make(url, errors)
    # The SDKs block; the server runs in this loop, so they run in a thread.
    await asyncio.to_thread(shop_backend, sdk, await shop.tick())
    return errors


async def assert_journey_started_once(shop: Shop) -> None:
    with shop.sessions() as session:
        rows = list(session.scalars(select(Event).order_by(Event.id)))
    assert [(row.type, row.event) for row in rows] == [
        ("identify", None),
        ("track", "Checkout Started"),
    ]
    assert all(row.routed_at is not None for row in rows)
    handle = shop.handle(abandoned_cart_id("c-1"))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await shop.sleep(minutes=31)
    assert [(m.to, m.step) for m in shop.outbox_mail()] == [("Ana <ana@example.com>", "reminder")]


async def test_segment_sdk_starts_the_abandoned_cart_journey(shop: Shop) -> None:
    async with serving(app_for(shop)) as url:
        errors = await play(shop, url, segment)

    assert errors == []
    await assert_journey_started_once(shop)


async def test_rudderstack_sdk_starts_the_abandoned_cart_journey(shop: Shop) -> None:
    async with serving(app_for(shop)) as url:
        errors = await play(shop, url, rudderstack)

    assert errors == []
    await assert_journey_started_once(shop)


class StoreDown:
    """Sessions for the app whose first ``failures`` cannot reach the database."""

    def __init__(self, sessions: sessionmaker[Session], failures: int) -> None:
        self.sessions = sessions
        self.failures = failures

    def __call__(self) -> Session:
        if self.failures:
            self.failures -= 1
            raise OperationalError("connect", {}, ConnectionRefusedError("store down"))
        return self.sessions()


class TemporalDown:
    """The app's Temporal client, refusing its first ``failures`` workflow starts."""

    def __init__(self, client: Client, failures: int) -> None:
        self.client = client
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        return await self.client.start_workflow(*args, **kwargs)


async def test_segment_retries_while_the_store_is_down_and_delivers_once(shop: Shop) -> None:
    store = StoreDown(shop.sessions, failures=2)
    app = app_for(shop, session_factory=cast(sessionmaker[Session], store))

    async with serving(app) as url:
        errors = await play(shop, url, segment)

    assert (errors, store.failures) == ([], 0)
    await assert_journey_started_once(shop)


async def test_rudderstack_retries_while_temporal_is_down_and_delivers_once(shop: Shop) -> None:
    temporal = TemporalDown(shop.env.client, failures=2)
    app = app_for(shop, client=cast(Client, temporal))

    async with serving(app) as url:
        errors = await play(shop, url, rudderstack)

    assert (errors, temporal.failures) == ([], 0)
    await assert_journey_started_once(shop)
