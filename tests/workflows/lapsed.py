"""Lapsed customers as the daily sweep hands them to a journey: a customer whose last order
is long past, their recorded entry, and the start through ``starter.starting.deliver``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from starter.starting import StartJourney, deliver
from tests.guardrails.test_sendgrid_webhook import HOOK, signed
from tests.harness import Shop
from triggermail.ids import reactivation_id, win_back_id
from triggermail.store import EmailSend, JourneyEntry, Suppression
from workflows.types import LapsedInput

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}
IDS = {"reactivation": reactivation_id, "win_back": win_back_id}
LAPSED_FOR = {"reactivation": timedelta(days=91), "win_back": timedelta(days=181)}


async def lapsed_customer(shop: Shop, customer: str, *, name: str | None = "Ana") -> None:
    """A customer with consent whose one order was placed long ago."""
    traits: dict[str, Any] = {"email": f"{customer}@example.com"}
    if name:
        traits["firstName"] = name
    await shop.identify(customer, **traits)
    placed = await shop.tick() - timedelta(days=200)
    await shop.send(
        {
            "type": "track",
            "userId": customer,
            "event": "Order Completed",
            "properties": {"order_id": f"{customer}-o-0", "total": 24.9, "products": [TEE]},
            "timestamp": placed.isoformat(),
        }
    )


async def enter(
    shop: Shop, journey: str, customer: str, *, segment: str = "repeat", record: bool = True
) -> str:
    """Start the journey the way the sweep does: record the entry (with the segment), then
    start the workflow once under its lapse's ID. Returns the workflow ID."""
    now = await shop.tick()
    last_order_at = now - LAPSED_FOR[journey]
    workflow_id = IDS[journey](customer, last_order_at.date().isoformat())
    if record:
        with shop.sessions() as session:
            session.add(
                JourneyEntry(
                    workflow_id=workflow_id,
                    customer_id=customer,
                    journey=journey,
                    segment=segment,
                    entered_at=now,
                    sweep_date=now.date(),
                )
            )
            session.commit()
    await deliver(
        shop.env.client,
        StartJourney(
            journey=journey,
            workflow_id=workflow_id,
            customer_id=customer,
            input=LapsedInput(
                customer_id=customer,
                entered_at=now,
                entry_key=last_order_at.date().isoformat(),
                # As the sweep starts it: the segment's offer pinned in the spec.
                spec=shop.journeys.offered(journey, shop.journeys.spec(journey), segment),
                segment=segment,
                last_order_at=last_order_at,
                timezone="Europe/Paris",
            ),
            once=True,
        ),
        task_queue=shop.task_queue,
    )
    shop.touched.add(workflow_id)
    return workflow_id


async def sendgrid_reports(shop: Shop, http: httpx.AsyncClient, event: str, row: EmailSend) -> None:
    """SendGrid's signed Event Webhook reports an open or a click of the e-mail ``row``."""
    at = int((await shop.tick()).timestamp())
    body = json.dumps(
        [
            {
                "email": row.to_email,
                "timestamp": at,
                "event": event,
                "sg_event_id": f"{event}-{row.id}",
                "sg_message_id": f"{row.id}.filter0001",
                "send_id": row.id,
                **({"url": "https://shop.example/"} if event == "click" else {}),
            }
        ]
    ).encode()
    reply = await http.post(HOOK, content=body, headers=signed(body, at))
    assert reply.json() == {"recorded": 1, "duplicates": 0, "ignored": 0}


def suppressions(shop: Shop, customer: str) -> list[tuple[str, str, str | None]]:
    with shop.sessions() as session:
        rows = session.scalars(
            select(Suppression).where(Suppression.customer_id == customer).order_by(Suppression.id)
        )
        return [(s.reason, s.source, s.send_id) for s in rows]


def sent(shop: Shop, journey: str, step: str) -> EmailSend:
    (row,) = [r for r in shop.ledger() if r.journey == journey and r.step == step]
    return row
