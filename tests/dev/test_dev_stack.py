"""``triggermail dev`` as a newcomer runs it: the demo plays, and a second run resumes cleanly.

The real stack — Temporal dev server with its SQLite file, migrations, worker, API,
demo — on free ports in a scratch folder, with the demo's timings cut to seconds.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from sqlalchemy import func, select

from tests.seed import free_port
from triggermail.ops.devstack import DEV_ADMIN_KEY, run_dev
from triggermail.settings import Settings
from triggermail.store import EmailSend, make_engine, make_session_factory

pytestmark = pytest.mark.dev_server

EXPECTED = [
    "abandoned-cart/demo-ana: ended 'completed' after reminder, incentive",
    "abandoned-cart/demo-ben: ended 'purchase' after no e-mail",
    "abandoned-cart/demo-chloe: ended 'purchase' after reminder",
]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    demo = Path(__file__).parents[2] / "triggermail" / "demo-journeys.toml"
    fast = (
        demo.read_text()
        .replace('after = "10s"', 'after = "3s"')
        .replace('after = "20s"', 'after = "4s"')
    )
    (tmp_path / "journeys.toml").write_text(fast)
    return tmp_path


async def play_once(scratch: Path) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200)
    api_port = free_port()
    settings = Settings(journeys=scratch / "journeys.toml", metrics_address="")
    task = asyncio.create_task(
        run_dev(
            settings,
            console=console,
            api_port=api_port,
            temporal_port=free_port(),
            ui_port=free_port(),
        )
    )
    try:
        for _ in range(600):
            if "demo: done" in out.getvalue() or task.done():
                break
            await asyncio.sleep(0.1)
        if task.done():
            task.result()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            card = await http.get(
                "/v1/customers/demo-ana", headers={"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
            )
            outbox = await http.get("/outbox")
        assert card.status_code == 200 and card.json()["profile"]["first_name"] == "Ana"
        assert outbox.status_code == 200 and "Ana, you left something" in outbox.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return out.getvalue()


async def test_dev_plays_the_demo_and_a_second_run_resumes_on_the_same_data(
    scratch: Path,
) -> None:
    first = await play_once(scratch)
    for line in EXPECTED:
        assert line in first, first
    # The orders' and Dan's journeys go on after the carts' end: count the carts' e-mails.
    assert cart_emails(scratch) == 3
    for started in (
        "browse-abandonment/demo-dan",
        "post-purchase/order-demo-ben-",
        "review-request/order-demo-chloe-",
        "replenishment/demo-chloe/tee-organic",
    ):
        assert started in first, first
    assert (scratch / ".triggermail" / "temporal.db").exists()

    second = await play_once(scratch)
    for line in EXPECTED:
        assert line in second, second
    assert cart_emails(scratch) == 6
    # Dan was mailed minutes ago: the browse journey's cool-down keeps him out.
    assert "browse-abandonment/demo-dan" not in second, second


def cart_emails(scratch: Path) -> int:
    engine = make_engine(f"sqlite:///{scratch / '.triggermail' / 'triggermail.db'}")
    with make_session_factory(engine)() as session:
        count = session.scalar(
            select(func.count())
            .select_from(EmailSend)
            .where(EmailSend.journey == "abandoned_cart", EmailSend.status == "sent")
        )
    engine.dispose()
    return count or 0
