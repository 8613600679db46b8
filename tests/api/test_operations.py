"""What the API shows operators and developers: ``/metrics`` and the dev outbox viewer."""

from __future__ import annotations

import httpx

from tests.api.conftest import ADMIN_KEY, Api, app_for, in_process
from tests.harness import Shop

TEE = {"product_id": "tee", "name": "Tee", "price": 20, "cart_id": "k"}


async def test_metrics_count_what_the_intake_took_and_refused(api: Api) -> None:
    batch = {
        "batch": [
            {"type": "identify", "userId": "m-1", "messageId": "a", "traits": {"email": "m@x.io"}},
            {"type": "track", "userId": "m-1", "event": "Viewed", "messageId": "b"},
            {"type": "track", "event": "No One", "messageId": "c"},
        ]
    }
    assert (await api.post("/v1/batch", batch)).status_code == 200
    assert (await api.post("/v1/batch", batch)).status_code == 200
    await api.get("/v1/customers/m-1", headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    text = (await api.get("/metrics")).text
    assert 'triggermail_events_total{outcome="accepted",type="identify"} 1.0' in text
    assert 'triggermail_events_total{outcome="accepted",type="track"} 1.0' in text
    assert 'triggermail_events_total{outcome="duplicate",type="track"} 1.0' in text
    assert 'triggermail_events_total{outcome="refused",type="track"} 2.0' in text
    assert 'triggermail_http_requests_total{route="/v1/batch",status="200"} 2.0' in text
    # Route templates, never ids: a label per customer would grow without end.
    assert 'route="/v1/customers/{customer_id}"' in text and "m-1" not in text


async def test_outbox_lists_caught_emails_and_shows_each_with_headers(api: Api, shop: Shop) -> None:
    await shop.identify("o-1", email="ana@example.com", firstName="Ana")
    await shop.track("o-1", "Product Added", **TEE)
    await shop.sleep(minutes=31)
    (row,) = shop.ledger()

    listing = await api.get("/outbox")
    assert listing.status_code == 200
    assert "Ana, you left something in your cart" in listing.text
    assert "ana@example.com" in listing.text and f"/outbox/{row.id}" in listing.text

    page = await api.get(f"/outbox/{row.id}")
    assert page.status_code == 200
    assert "<th>Subject</th>" in page.text and "<th>To</th>" in page.text
    assert "Still thinking it over" in page.text  # the plain-text part
    html = await api.get(f"/outbox/{row.id}/html")
    assert html.headers["content-security-policy"] == "script-src 'none'"
    assert "<table" in html.text


async def test_outbox_refuses_unknown_ids_and_strangers(api: Api, shop: Shop) -> None:
    assert (await api.get("/outbox/0123456789abcdef0123456789abcdef")).status_code == 404
    assert (await api.get("/outbox/..%2F..%2Fetc%2Fpasswd")).status_code == 404

    app = app_for(shop)
    async with in_process(app, shop):
        stranger = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 4711)),
            base_url="http://triggermail.test",
        )
        async with stranger:
            assert (await stranger.get("/outbox")).status_code == 403
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            assert (await stranger.get("/outbox", headers=admin)).status_code == 200
