"""A shop wired to triggermail the way production is, with time from the time-skipping server.

Events go in through the real intake; the real worker renders, records and sends;
only SendGrid's HTTP endpoint is a fake (or the outbox is a temp folder).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.transports import MailTransport, OutboxTransport, SendGridTransport
from starter.intake import Intake, IntakeResult
from starter.starting import journeys_of
from tests.pii import history_text, personal_data_in
from triggermail.journeys import Guardrails, JourneysConfig, load_journeys
from triggermail.settings import Settings
from triggermail.store import Customer, EmailSend, make_engine, make_session_factory
from worker import Workers, build_worker
from workflows.types import JourneyResult

GUARDRAILS_OFF = Guardrails(min_hours_between=0, max_per_week=0, quiet_hours=None)


def only(journeys: JourneysConfig, names: Iterable[str]) -> JourneysConfig:
    """The journeys with all but ``names`` off: a test sees the e-mails of its journeys only."""
    keep = set(names)
    changes = {}
    for name in journeys.journey_names():
        config = getattr(journeys, name)
        if config is not None and config.enabled and name not in keep:
            changes[name] = config.model_copy(update={"enabled": False})
    return journeys.model_copy(update=changes)


@dataclass
class Delivered:
    """One e-mail as its recipient sees it, with the simulated time it went out."""

    to: str
    subject: str
    text: str
    step: str
    at: datetime


class Shop:
    def __init__(
        self,
        env: WorkflowEnvironment,
        database_url: str,
        tmp_path: Path,
        *,
        journeys: JourneysConfig | None = None,
        sendgrid_url: str | None = None,
        guardrails: Guardrails | None = None,
        welcome: bool = False,
        enabled: Iterable[str] = ("abandoned_cart",),
        workflow_cache: int | None = None,
    ) -> None:
        self.env = env
        self.engine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)
        # The time-skipping server starts at the wall clock's time of day: quiet hours and
        # the cap would make every journey's timings depend on when the suite runs. They
        # are off unless a test hands them in. So are the journeys a test does not name in
        # ``enabled`` (``welcome=True`` adds the welcome): their e-mails would join the
        # e-mails of the journeys under test.
        names = {*enabled, *(["welcome"] if welcome else [])}
        self.journeys = only(journeys or load_journeys(), names).model_copy(
            update={"guardrails": guardrails or GUARDRAILS_OFF}
        )
        self.task_queue = f"tq-{uuid.uuid4()}"
        self.outbox = tmp_path / "outbox"
        self.settings = Settings(
            database_url=database_url, outbox_dir=self.outbox, task_queue=self.task_queue
        )
        if workflow_cache is not None:
            self.settings = self.settings.model_copy(update={"workflow_cache": workflow_cache})
        self.transport: MailTransport = (
            SendGridTransport(api_key="SG.test", host=sendgrid_url, timeout_s=2)
            if sendgrid_url
            else OutboxTransport(self.outbox)
        )
        self.intake = Intake(
            session_factory=self.sessions,
            client=env.client,
            journeys=self.journeys,
            task_queue=self.task_queue,
            clock=self.now_sync,
        )
        self.executor = ThreadPoolExecutor(self.settings.activity_threads)
        # The journeys' worker and the send worker beside it, as `triggermail worker` runs.
        self.worker: Workers | None = None
        self._virtual_now = datetime.now(UTC)
        self.touched: set[str] = set()

    def now_sync(self) -> datetime:
        """The time-skipping server's now, from activity and intake threads.

        Inside an activity it is the server time the attempt was scheduled at; for the
        intake, the server time read just before the event was submitted.
        """
        if activity.in_activity():
            return activity.info().current_attempt_scheduled_time
        return self._virtual_now

    async def __aenter__(self) -> Shop:
        self.worker = self._build_worker()
        await self.worker.__aenter__()
        return self

    def _build_worker(self) -> Workers:
        return build_worker(
            self.env.client,
            settings=self.settings,
            journeys=self.journeys,
            session_factory=self.sessions,
            transport=self.transport,
            executor=self.executor,
            clock=self.now_sync,
        )

    async def redeploy(self, journeys: JourneysConfig) -> None:
        """A deploy with another journeys TOML: the worker stops and starts again on it, and
        the intake routes new events with it, while the journeys running sleep on.

        Build the shop with ``workflow_cache=0``: a cached journey's next task goes to the
        stopped worker's sticky queue, and the time-skipping server holds its clock until
        that queue's timeout, which its frozen clock never reaches.
        """
        assert self.worker is not None
        await self.worker.__aexit__(None, None, None)
        self.journeys = journeys
        self.intake = Intake(
            session_factory=self.sessions,
            client=self.env.client,
            journeys=journeys,
            task_queue=self.task_queue,
            clock=self.now_sync,
        )
        self.worker = self._build_worker()
        await self.worker.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        # The time-skipping server is shared: a journey left running (or a workflow task
        # left unprocessed) would hold its clock and its workflow ID for the next test.
        # Journeys started through other doors (HTTP) are found from the store's customers.
        with self.sessions() as session:
            for customer_id in session.scalars(select(Customer.id)):
                for ids in journeys_of(session, customer_id, self._virtual_now).values():
                    self.touched.update(ids)
        leaks = await self._personal_data_in_histories()
        # The worker stops first: a journey terminated while the worker holds its workflow
        # task leaves the time-skipping server's clock locked for every later test.
        assert self.worker is not None
        await self.worker.__aexit__(*exc)
        for workflow_id in self.touched:
            with contextlib.suppress(RPCError):  # already closed
                await self.handle(workflow_id).terminate("test over")
        self.executor.shutdown(wait=True)
        self.engine.dispose()
        assert not leaks, f"personal data in workflow histories: {leaks}"

    async def _personal_data_in_histories(self) -> dict[str, list[str]]:
        """Every history this test produced, scanned for the customers' addresses and names."""
        with self.sessions() as session:
            customers = list(session.scalars(select(Customer)))
        emails = [c.email for c in customers if c.email]
        names = [n for c in customers for n in (c.first_name, c.last_name) if n]
        leaks = {}
        for workflow_id in sorted(self.touched):
            try:
                history = await self.handle(workflow_id).fetch_history()
            except RPCError:
                continue  # never started (the event was refused)
            found = personal_data_in(history_text(history), emails=emails, names=names)
            if found:
                leaks[workflow_id] = found
        return leaks

    # -- events --------------------------------------------------------------------------

    async def tick(self) -> datetime:
        """Bring the intake's clock to the server's now (before events from any door)."""
        self._virtual_now = await self.env.get_current_time()
        return self._virtual_now

    async def send(self, call: dict[str, Any]) -> IntakeResult:
        await self.tick()
        call.setdefault("messageId", f"msg-{uuid.uuid4()}")
        call.setdefault("timestamp", self._virtual_now.isoformat())
        result = await self.intake.submit(call)
        self.touched.update(result.started)
        return result

    async def identify(self, user_id: str, **traits: Any) -> IntakeResult:
        traits.setdefault("marketing_consent", True)
        return await self.send({"type": "identify", "userId": user_id, "traits": traits})

    async def track(self, user_id: str, event: str, **properties: Any) -> IntakeResult:
        return await self.send(
            {"type": "track", "userId": user_id, "event": event, "properties": properties}
        )

    async def sleep(self, **delta: float) -> None:
        await self.env.sleep(timedelta(**delta))

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    def handle(self, workflow_id: str) -> WorkflowHandle[Any, Any]:
        return self.env.client.get_workflow_handle(workflow_id, result_type=JourneyResult)

    # -- what the customer got -----------------------------------------------------------

    def ledger(self) -> list[EmailSend]:
        with self.sessions() as session:
            return list(session.scalars(select(EmailSend).order_by(EmailSend.created_at)))

    def record_sent(
        self,
        customer_id: str,
        *,
        journey: str,
        step: str,
        workflow_id: str,
        at: datetime | None = None,
    ) -> None:
        """A ledger row for an e-mail no journey of this test sent: an earlier one of
        another journey, or one whose closed run Temporal has since forgotten."""
        with self.sessions() as session:
            session.add(
                EmailSend(
                    idempotency_key=f"{workflow_id}/earlier/{step}/{uuid.uuid4().hex}",
                    customer_id=customer_id,
                    journey=journey,
                    step=step,
                    workflow_id=workflow_id,
                    template=f"{journey}/{step}",
                    status="sent",
                    sent_at=at,
                    attempted_at=at,
                    due_at=at,
                )
            )
            session.commit()

    def outbox_mail(self) -> list[Delivered]:
        """E-mails in the outbox, in the order they were sent (by the ledger's simulated time)."""
        sent = {row.id: row for row in self.ledger() if row.status == "sent"}
        out = []
        for path in sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            row = sent[path.stem]
            assert row.sent_at is not None
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            out.append(
                Delivered(
                    to=str(message["To"]),
                    subject=str(message["Subject"]),
                    text=body.get_content(),
                    step=row.step,
                    at=row.sent_at,
                )
            )
        return sorted(out, key=lambda d: d.at)
