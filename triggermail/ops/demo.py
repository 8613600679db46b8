"""The demo shop that ``triggermail dev`` plays, through the same intake a shop's backend uses.

Four customers, second-scale timings from ``demo-journeys.toml``: one abandons a
cart and gets both e-mails, one buys before the reminder, one buys after it, one
looks at products and leaves. The two orders start their post-purchase, review
request and (for the T-shirts) replenishment journeys. Every run uses fresh message,
cart and order ids, so a second run plays again on the same data.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from starter.intake import Intake, IntakeResult

CATALOGUE: dict[str, dict[str, Any]] = {
    "tee-organic": {
        "name": "Organic cotton T-shirt",
        "price": 24.90,
        "brand": "Northwind",
        "category": "T-shirts",
        "url": "https://shop.example/p/tee-organic",
        "image_url": "https://picsum.photos/seed/tee/128",
    },
    "hoodie-grey": {
        "name": "Heather grey hoodie",
        "price": 59.00,
        "brand": "Northwind",
        "category": "Hoodies",
        "url": "https://shop.example/p/hoodie-grey",
        "image_url": "https://picsum.photos/seed/hoodie/128",
    },
    "tote-canvas": {
        "name": "Canvas tote",
        "price": 15.00,
        "brand": "Fieldday",
        "category": "Bags",
        "url": "https://shop.example/p/tote-canvas",
        "image_url": "https://picsum.photos/seed/tote/128",
    },
}

CUSTOMERS: dict[str, dict[str, Any]] = {
    "demo-ana": {"email": "ana@demo.example", "firstName": "Ana", "locale": "en-GB"},
    "demo-ben": {"email": "ben@demo.example", "firstName": "Ben", "locale": "en-US"},
    "demo-chloe": {"email": "chloe@demo.example", "firstName": "Chloé", "locale": "fr-FR"},
    "demo-dan": {"email": "dan@demo.example", "firstName": "Dan", "locale": "en-GB"},
}
VISITOR = "demo-visitor"
"""An anonymous visitor whose product views bring the catalogue in (and start nothing)."""


@dataclass(frozen=True)
class Story:
    customer_id: str
    expect: str
    """What the operator should see in the Temporal UI for this journey."""


STORIES = [
    Story("demo-ana", "completed by its e-mails: reminder and incentive"),
    Story("demo-ben", "ended by a purchase before any e-mail"),
    Story("demo-chloe", "ended by a purchase after the reminder"),
]


class Demo:
    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.run = uuid.uuid4().hex[:8]

    async def call(self, body: dict[str, Any]) -> IntakeResult:
        body.setdefault("messageId", f"demo-{self.run}-{uuid.uuid4().hex}")
        return await self.intake.submit(body)

    async def track(self, user_id: str, event: str, **properties: Any) -> IntakeResult:
        return await self.call(
            {"type": "track", "userId": user_id, "event": event, "properties": properties}
        )

    def product(self, product_id: str, **extra: Any) -> dict[str, Any]:
        return {"product_id": product_id, **CATALOGUE[product_id], **extra}

    async def load_shop(self) -> None:
        """Customers with consent, and the catalogue seen through product views."""
        for customer_id, traits in CUSTOMERS.items():
            await self.call(
                {
                    "type": "identify",
                    "userId": customer_id,
                    "traits": {**traits, "marketing_consent": True},
                    "context": {"timezone": "Europe/Paris"},
                }
            )
        for product_id in CATALOGUE:
            await self.call(
                {
                    "type": "track",
                    "anonymousId": VISITOR,
                    "event": "Product Viewed",
                    "properties": self.product(product_id),
                }
            )

    async def play(self, *, reminder_after_s: float) -> list[str]:
        """Leave three carts behind; two customers then buy at different moments; one
        customer browses and leaves. Returns the journeys other than the carts' it started."""
        carts = {story.customer_id: f"cart-{story.customer_id}-{self.run}" for story in STORIES}
        started: list[str] = []
        for product_id in ("hoodie-grey", "tee-organic", "hoodie-grey"):
            viewed = await self.track("demo-dan", "Product Viewed", **self.product(product_id))
            started += viewed.started
        await self.track(
            "demo-ana", "Product Added", **self.product("tee-organic", cart_id=carts["demo-ana"])
        )
        await self.track(
            "demo-ana", "Product Added", **self.product("tote-canvas", cart_id=carts["demo-ana"])
        )
        await self.track(
            "demo-ben", "Product Added", **self.product("hoodie-grey", cart_id=carts["demo-ben"])
        )
        await self.track(
            "demo-chloe",
            "Checkout Started",
            cart_id=carts["demo-chloe"],
            currency="EUR",
            products=[self.product("tee-organic", quantity=2), self.product("hoodie-grey")],
        )
        await asyncio.sleep(reminder_after_s / 3)
        started += await self.order("demo-ben", carts["demo-ben"], ["hoodie-grey"])
        await asyncio.sleep(reminder_after_s)
        started += await self.order(
            "demo-chloe", carts["demo-chloe"], ["tee-organic", "hoodie-grey"]
        )
        return list(dict.fromkeys(started))

    async def order(self, customer_id: str, cart_id: str, product_ids: list[str]) -> list[str]:
        products = [self.product(pid) for pid in product_ids]
        total = round(sum(p["price"] for p in products), 2)
        ordered = await self.track(
            customer_id,
            "Order Completed",
            order_id=f"order-{customer_id}-{self.run}",
            cart_id=cart_id,
            total=total,
            revenue=total,
            currency="EUR",
            products=products,
        )
        return ordered.started
