"""The Temporal UI as an operator sees it: screenshots for the README (``make test-ui``).

Headless Chromium (Debian's ``chromium``) opens the workflow list filtered by
``CustomerId`` and one journey's page on a dev server with the UI, and saves
``docs/ui-*.png``. Not part of the default suite: it needs Chromium and takes a while.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from tests.seed import free_port
from triggermail.ids import abandoned_cart_id
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.search_attributes import ALL
from triggermail.temporal import binary

pytestmark = pytest.mark.skipif(
    not os.environ.get("TRIGGERMAIL_UI_TESTS"),
    reason="browser check: run `make test-ui` (needs Debian's chromium)",
)
DOCS = Path(__file__).parents[2] / "docs"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


UI_PORT = free_port()


@pytest.fixture(scope="module")
async def ui_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=ALL,
        ui=True,
        ui_port=UI_PORT,
        dev_server_log_level="error",
    ) as env:
        yield env


@pytest.fixture
def journeys(tmp_path: Path) -> JourneysConfig:
    text = (Path(__file__).parents[2] / "triggermail" / "journeys.toml").read_text()
    path = tmp_path / "ui.toml"
    path.write_text(text.replace('after = "30m"', 'after = "2s"'))
    return load_journeys(path)


async def screenshot(url: str, target: Path, profile: Path, *, height: int = 900) -> None:
    """Open ``url`` in headless Chromium, let the UI fetch its data, save a PNG.

    Driven over the DevTools protocol rather than ``--screenshot``: the UI is a single-page
    app that keeps long-polling a running workflow, so "page loaded" comes too early and
    a virtual-time budget never runs out.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium not installed: apt-get install chromium"
    port = free_port()
    browser = subprocess.Popen(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--window-size=1440,{height}",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    tabs = (await http.get(f"http://127.0.0.1:{port}/json")).json()
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        page = next(tab for tab in tabs if tab["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as devtools:
            await _call(devtools, 1, "Page.navigate", url=url)
            await asyncio.sleep(6)  # the UI's own requests, then rendering
            shot = await _call(devtools, 2, "Page.captureScreenshot", format="png")
        target.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        browser.wait(timeout=10)
    assert target.stat().st_size > 20_000, f"{target} looks empty"


async def _call(devtools: Any, call_id: int, method: str, **params: Any) -> dict[str, Any]:
    await devtools.send(json.dumps({"id": call_id, "method": method, "params": params}))
    while True:
        message = json.loads(await devtools.recv())
        if message.get("id") == call_id:
            return dict(message.get("result", {}))


async def test_ui_shows_a_customers_journeys_and_a_journeys_story(
    ui_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, journeys: JourneysConfig
) -> None:
    async with Shop(ui_env, sqlite_url, tmp_path, journeys=journeys) as shop:
        await shop.identify(
            "cust-4711", email="ana@example.com", firstName="Ana", timezone="Europe/Paris"
        )
        await shop.track(
            "cust-4711", "Product Added", product_id="tee", name="Tee", price=24.9, cart_id="cart-1"
        )
        await shop.identify("cust-0815", email="ben@example.com", firstName="Ben")
        await shop.track("cust-0815", "Product Added", product_id="cap", name="Cap", price=9)
        await shop.track("cust-0815", "Order Completed", order_id="o-1", total=9)
        await asyncio.sleep(4)  # the reminder goes out; the incentive waits a day

        handle = shop.handle(abandoned_cart_id("cust-4711"))
        run_id = (await handle.describe()).run_id
        base = f"http://127.0.0.1:{UI_PORT}/namespaces/default/workflows"
        query = quote('CustomerId="cust-4711"')
        listing = DOCS / "ui-journeys-by-customer.png"
        await screenshot(f"{base}?query={query}", listing, tmp_path / "a")
        page = f"{base}/{quote(abandoned_cart_id('cust-4711'), safe='')}/{run_id}/history"
        await screenshot(page, DOCS / "ui-journey.png", tmp_path / "b", height=1500)
