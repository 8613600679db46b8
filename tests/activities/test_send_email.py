"""The guarded send, one activity call at a time: idempotency, crashes, retries, coupons."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.rendering import Renderer
from activities.transports import MailTransport, OutboxTransport, SendGridTransport
from tests.fakes.sendgrid import FakeSendGrid, error, rate_limited
from tests.seed import seed_customer_with_cart
from triggermail.journeys import load_journeys
from triggermail.store import (
    Coupon,
    EmailSend,
    make_engine,
    make_session_factory,
)
from workflows.types import SendEmailInput, StepSpec

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
REMINDER = StepSpec(name="reminder", after_s=1800, template="abandoned_cart/reminder")
INCENTIVE = StepSpec(
    name="incentive",
    after_s=86400,
    template="abandoned_cart/incentive",
    coupon_percent=15,
    coupon_valid_s=172800,
)


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    seed_customer_with_cart(factory, now=NOW)
    yield factory
    engine.dispose()


def activities(sessions: sessionmaker[Session], transport: MailTransport) -> EmailActivities:
    journeys = load_journeys()
    return EmailActivities(
        session_factory=sessions,
        renderer=Renderer(shop_locale=journeys.shop.locale),
        transport=transport,
        journeys=journeys,
        clock=lambda: NOW + timedelta(minutes=30),
    )


def request(step: StepSpec = REMINDER) -> SendEmailInput:
    return SendEmailInput(
        idempotency_key=f"abandoned-cart/c-1/entry-1/{step.name}",
        customer_id="c-1",
        journey="abandoned_cart",
        step=step,
        workflow_id="abandoned-cart/c-1",
        entered_at=NOW,
        cart_id="k-1",
    )


def test_same_step_twice_writes_one_email(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    send = activities(sessions, OutboxTransport(outbox)).send_email
    first = ActivityEnvironment().run(send, request())
    second = ActivityEnvironment().run(send, request())

    assert first == second
    assert first.status == "sent"
    assert [p.name for p in outbox.iterdir()] == [f"{first.send_id}.eml"]


def test_a_customer_the_store_does_not_have_is_skipped_without_a_ledger_row(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Its row would break the ledger's foreign key; retrying could never succeed."""
    send = activities(sessions, OutboxTransport(tmp_path / "outbox")).send_email
    ghost = replace(request(), customer_id="ghost", idempotency_key="abandoned-cart/ghost/e/r")

    result = ActivityEnvironment().run(send, ghost)

    assert (result.status, result.reason) == ("skipped", "unknown_customer")
    with sessions() as session:
        assert session.scalars(select(EmailSend)).all() == []
    assert not (tmp_path / "outbox").exists()


def test_an_attempt_that_died_mid_send_is_never_repeated(
    sessions: sessionmaker[Session],
) -> None:
    """A worker crashed after calling SendGrid: the retry must not mail the customer again."""
    with FakeSendGrid() as sendgrid:
        transport = SendGridTransport(api_key="SG.x", host=sendgrid.url, timeout_s=2)
        with sessions() as session:
            session.add(
                EmailSend(
                    idempotency_key=request().idempotency_key,
                    customer_id="c-1",
                    journey="abandoned_cart",
                    step="reminder",
                    workflow_id="abandoned-cart/c-1",
                    template=REMINDER.template,
                    status="attempting",
                    attempts=1,
                )
            )
            session.commit()
        result = ActivityEnvironment().run(activities(sessions, transport).send_email, request())

    assert result.status == "unknown"
    assert sendgrid.requests == []


def test_a_retry_after_a_server_error_keeps_the_same_coupon(
    sessions: sessionmaker[Session],
) -> None:
    with FakeSendGrid() as sendgrid:
        sendgrid.script.append(error(502))
        transport = SendGridTransport(api_key="SG.x", host=sendgrid.url, timeout_s=2)
        send = activities(sessions, transport).send_email
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(send, request(INCENTIVE))
        assert caught.value.type == "RetryableSendError" and not caught.value.non_retryable
        result = ActivityEnvironment().run(send, request(INCENTIVE))
        inbox = sendgrid.inbox()

    assert result.status == "sent"
    with sessions() as session:
        (coupon,) = session.scalars(select(Coupon))
        assert (coupon.percent, coupon.expires_at) == (15, NOW + timedelta(minutes=30, days=2))
    (mail,) = inbox
    assert coupon.code in mail["text"]


def test_rate_limit_asks_temporal_to_wait_until_the_reset(
    sessions: sessionmaker[Session],
) -> None:
    with FakeSendGrid() as sendgrid:
        sendgrid.script.append(rate_limited(reset_in_s=30))
        transport = SendGridTransport(api_key="SG.x", host=sendgrid.url, timeout_s=2)
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(activities(sessions, transport).send_email, request())

    delay = caught.value.next_retry_delay
    assert delay is not None and timedelta(seconds=25) <= delay <= timedelta(seconds=31)


def test_unreachable_sendgrid_is_retried(sessions: sessionmaker[Session]) -> None:
    # Nothing listens on the port: the request never left, so a retry cannot duplicate.
    transport = SendGridTransport(api_key="SG.x", host="http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities(sessions, transport).send_email, request())
    assert caught.value.type == "RetryableSendError"
    with sessions() as session:
        row = session.scalar(select(EmailSend))
        assert row is not None and (row.status, row.attempts) == ("pending", 1)


def test_a_template_a_deploy_renamed_is_found_through_its_step_and_a_removed_one_skipped(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A journey keeps the template name it entered with; a later deploy that renamed or
    removed the file must not fail its e-mail on every retry."""
    outbox = tmp_path / "outbox"
    send = activities(sessions, OutboxTransport(outbox)).send_email
    renamed = replace(REMINDER, template="abandoned_cart/reminder_before_the_deploy")
    gone = replace(REMINDER, name="nudge", template="abandoned_cart/nudge")

    found = ActivityEnvironment().run(send, request(renamed))
    skipped = ActivityEnvironment().run(
        send, replace(request(gone), idempotency_key="abandoned-cart/c-1/entry-1/nudge")
    )

    assert found.status == "sent"
    assert (skipped.status, skipped.reason) == ("skipped", "template_gone")
    with sessions() as session:
        rows = {row.step: row for row in session.scalars(select(EmailSend))}
    assert rows["reminder"].template == "abandoned_cart/reminder"  # the step's file now
    assert (rows["nudge"].status, rows["nudge"].reason) == ("skipped", "template_gone")
    assert len(list(outbox.iterdir())) == 1
