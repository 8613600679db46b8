"""The triggermail worker: every journey workflow and activity, listed explicitly.

``triggermail worker`` runs it; tests and ``triggermail dev`` build the same worker
through :func:`build_worker` around their own client and transport. It polls two task
queues: the journeys' own, and beside it the send activities' (rate-limited for all
workers together, so the SendGrid plan's limit holds however many processes run).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.email import EmailActivities
from activities.experiments import ExperimentActivities
from activities.lapsed import LapsedActivities
from activities.rendering import Renderer
from activities.sweep import SweepActivities
from activities.transports import MailTransport, OutboxTransport, SendGridTransport
from triggermail.ids import email_task_queue
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.links import SecretMissing, UnsubscribeLinks, signing_secret
from triggermail.settings import Settings
from triggermail.store import make_engine, make_session_factory, utcnow
from triggermail.temporal import connect, missing_search_attributes
from workflows.experiments import ExperimentsWorkflow
from workflows.registry import JOURNEYS
from workflows.sweep import SweepWorkflow

log = logging.getLogger("triggermail.worker")

WORKFLOWS: list[type] = [
    SweepWorkflow,
    ExperimentsWorkflow,
    *(journey.workflow for journey in JOURNEYS),
]
"""The two scheduled workflows and every journey of the registry."""


class ConfigError(Exception):
    """Settings that cannot work together; the message says which and why."""


def make_transport(settings: Settings) -> MailTransport:
    if settings.mail_transport == "sendgrid":
        if settings.sendgrid_api_key is None:
            raise ConfigError("TRIGGERMAIL_MAIL_TRANSPORT=sendgrid needs SENDGRID_API_KEY")
        return SendGridTransport(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            host=settings.sendgrid_host,
            timeout_s=settings.sendgrid_timeout_s,
        )
    return OutboxTransport(settings.outbox_dir)


class Workers:
    """The journeys' worker and the send worker, started, run and stopped together."""

    def __init__(self, *workers: Worker) -> None:
        self.workers = workers
        self._stack = contextlib.AsyncExitStack()

    async def run(self) -> None:
        """Poll until cancelled; one worker failing stops the other."""
        async with asyncio.TaskGroup() as tasks:
            for worker in self.workers:
                tasks.create_task(worker.run())

    async def __aenter__(self) -> Workers:
        for worker in self.workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)


def build_worker(
    client: Client,
    *,
    settings: Settings,
    journeys: JourneysConfig,
    session_factory: sessionmaker[Session],
    transport: MailTransport,
    executor: ThreadPoolExecutor,
    renderer: Renderer | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Workers:
    """A worker for every journey; templates are checked first, so a broken one stops it here.

    Raises:
        TemplateError: naming the template, locale and problem.
        ConfigError: SendGrid without ``TRIGGERMAIL_SECRET`` (unsubscribe links unsigned).
    """
    try:
        secret = signing_secret(settings)
    except SecretMissing as err:
        raise ConfigError(str(err)) from None
    renderer = renderer or Renderer(shop_locale=journeys.shop.locale)
    checked = renderer.check(journeys)
    log.info("templates checked: %d e-mails render in every locale", checked)
    email = EmailActivities(
        session_factory=session_factory,
        renderer=renderer,
        transport=transport,
        journeys=journeys,
        clock=clock,
        links=UnsubscribeLinks(secret=secret, public_url=settings.public_url),
    )
    sweep = SweepActivities(
        session_factory=session_factory,
        journeys=journeys,
        client=client,
        task_queue=settings.task_queue,
        clock=clock,
    )
    lapsed = LapsedActivities(session_factory=session_factory, journeys=journeys, clock=clock)
    experiments = ExperimentActivities(
        session_factory=session_factory, journeys=journeys, clock=clock
    )
    journeys_worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        # Journeys that scheduled their sends before the send queue existed still do so here.
        activities=[
            email.send_email,
            *sweep.activities(),
            *experiments.activities(),
            lapsed.sunset_after,
            lapsed.sunset,
        ],
        activity_executor=executor,
        max_concurrent_activities=settings.activity_threads,
        # Journeys sleep for hours or days: Temporal's default of 1,000 would replay most of
        # them from their histories on every wake once more are asleep.
        max_cached_workflows=settings.workflow_cache,
    )
    send_worker = Worker(
        client,
        task_queue=email_task_queue(settings.task_queue),
        activities=[email.send_email],
        activity_executor=executor,
        max_concurrent_activities=settings.activity_threads,
        # Enforced by the server for the whole queue, whichever worker polls it.
        max_task_queue_activities_per_second=settings.sends_per_second or None,
    )
    return Workers(journeys_worker, send_worker)


async def check_search_attributes(client: Client) -> None:
    """Refuse to start on a namespace without the journeys' search attributes.

    Otherwise every journey's first upsert would fail its workflow task, over and over.

    Raises:
        ConfigError: naming the missing attributes and the command that adds them.
    """
    try:
        missing = await missing_search_attributes(client)
    except RPCError as err:
        # Temporal Cloud keeps the operator API closed to API keys: trust the namespace.
        log.warning("cannot list search attributes (%s); assuming they exist", err.message)
        return
    if missing:
        raise ConfigError(
            f"namespace {client.namespace!r} lacks search attributes {', '.join(missing)}: "
            "run `triggermail temporal setup` (or see the README for the temporal CLI commands)"
        )


async def run_worker(settings: Settings, *, client: Client | None = None) -> None:
    """Run until cancelled (Ctrl-C), against the cluster ``TEMPORAL_*`` points at."""
    journeys = load_journeys(settings.journeys)
    engine = make_engine(settings.database_url)
    client = client or await connect(metrics_address=settings.metrics_address or None)
    await check_search_attributes(client)
    with ThreadPoolExecutor(settings.activity_threads, thread_name_prefix="activity") as executor:
        worker = build_worker(
            client,
            settings=settings,
            journeys=journeys,
            session_factory=make_session_factory(engine),
            transport=make_transport(settings),
            executor=executor,
        )
        # What start-up built (templates, catalogs, clients) lives for good: GC skips it.
        gc.freeze()
        log.info(
            "worker polling task queues %r and %r (at most %s e-mails/s)",
            settings.task_queue,
            email_task_queue(settings.task_queue),
            settings.sends_per_second or "unlimited",
        )
        try:
            await worker.run()
        finally:
            engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(Settings()))
