"""A customer with a one-line cart, written straight into the store for activity-level tests."""

from __future__ import annotations

import socket
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from triggermail.store import Cart, CartLine, Customer, Product


def seed_customer_with_cart(
    sessions: sessionmaker[Session], *, now: datetime, **customer: Any
) -> None:
    """Customer ``c-1`` (Ana, consenting; ``customer`` overrides) with cart ``k-1`` of one tee."""
    fields: dict[str, Any] = {
        "id": "c-1",
        "email": "ana@example.com",
        "first_name": "Ana",
        "marketing_consent": True,
        **customer,
    }
    with sessions() as session:
        session.add(Customer(**fields))
        session.add(Product(id="tee", name="Tee", price=Decimal("20.00")))
        session.flush()  # carts reference both: no relationship tells the flush to order them
        session.add(
            Cart(
                id="k-1",
                customer_id=fields["id"],
                last_activity_at=now,
                lines=[CartLine(product_id="tee", quantity=1, price=Decimal("20.00"))],
            )
        )
        session.commit()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
