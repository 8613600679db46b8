"""The send activity's guardrails against the store, on SQLite and PostgreSQL: the cap holds
when journeys race, the weekly limit, suppression, quiet hours, legacy journeys."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.rendering import Renderer
from activities.transports import OutboxTransport
from tests.seed import seed_customer_with_cart
from triggermail.journeys import Guardrails, QuietHours, load_journeys
from triggermail.store import (
    EmailSend,
    Suppression,
    make_engine,
    make_session_factory,
)
from workflows.types import SendEmailInput, StepSpec

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # noon in Paris: outside quiet hours
REMINDER = StepSpec(name="reminder", after_s=1800, template="abandoned_cart/reminder")
CAP = Guardrails(min_hours_between=16, max_per_week=2, quiet_hours=None)


@pytest.fixture
def sessions(store_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(store_url)
    factory = make_session_factory(engine)
    seed_customer_with_cart(factory, now=NOW, timezone="Europe/Paris")
    yield factory
    engine.dispose()


def activities(
    sessions: sessionmaker[Session], outbox: Path, guardrails: Guardrails, now: datetime = NOW
) -> EmailActivities:
    journeys = load_journeys().model_copy(update={"guardrails": guardrails})
    return EmailActivities(
        session_factory=sessions,
        renderer=Renderer(shop_locale=journeys.shop.locale),
        transport=OutboxTransport(outbox),
        journeys=journeys,
        clock=lambda: now,
    )


def request(journey: str, *, may_defer: bool = True) -> SendEmailInput:
    return SendEmailInput(
        idempotency_key=f"{journey}/c-1/entry/reminder",
        customer_id="c-1",
        journey=journey,
        step=REMINDER,
        workflow_id=f"{journey}/c-1",
        entered_at=NOW - timedelta(hours=1),
        cart_id="k-1",
        may_defer=may_defer,
    )


def test_two_journeys_racing_for_the_cap_cannot_both_send(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    send = activities(sessions, tmp_path / "outbox", CAP).send_email
    journeys = [f"journey_{i}" for i in range(4)]
    with ThreadPoolExecutor(len(journeys)) as pool:
        results = list(pool.map(lambda j: ActivityEnvironment().run(send, request(j)), journeys))

    assert sorted(r.status for r in results) == ["deferred", "deferred", "deferred", "sent"]
    for held in (r for r in results if r.status == "deferred"):
        assert (held.reason, held.not_before) == ("frequency_cap", NOW + timedelta(hours=16))
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_the_weekly_limit_counts_seven_days_back(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as session:
        for days in (6, 2):
            session.add(
                EmailSend(
                    idempotency_key=f"old-{days}",
                    customer_id="c-1",
                    journey="abandoned_cart",
                    step="reminder",
                    workflow_id="w",
                    template="abandoned_cart/reminder",
                    status="sent",
                    sent_at=NOW - timedelta(days=days),
                )
            )
        session.commit()
    result = ActivityEnvironment().run(
        activities(sessions, tmp_path, CAP).send_email, request("welcome")
    )
    # Two in the last 7 days: the next may go once the older one is a week old.
    assert result.status == "deferred"
    assert result.not_before == NOW + timedelta(days=1)


def test_exempt_journeys_ignore_the_cap_and_quiet_hours(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    night = CAP.model_copy(
        update={"exempt": ["review_request"], "quiet_hours": QuietHours(time(21), time(9))}
    )
    at_night = datetime(2026, 5, 4, 22, 0, tzinfo=UTC)  # midnight in Paris
    send = activities(sessions, tmp_path, night, at_night).send_email
    assert ActivityEnvironment().run(send, request("review_request")).status == "sent"
    held = ActivityEnvironment().run(send, request("welcome"))
    # Not capped by the transactional e-mail; held by the night only, until 09:00 Paris.
    assert (held.status, held.reason) == ("deferred", "quiet_hours")
    assert held.not_before == datetime(2026, 5, 5, 7, 0, tzinfo=UTC)


def test_suppression_beats_everything_and_ends_the_journey(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as session:
        session.add(Suppression(email="ana@example.com", reason="bounced", source="sendgrid"))
        session.commit()
    result = ActivityEnvironment().run(
        activities(sessions, tmp_path, CAP).send_email, request("welcome")
    )
    assert (result.status, result.reason) == ("skipped", "bounced")


def test_a_journey_that_cannot_wait_sends_as_before(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A workflow from before guardrails would drop a ``deferred`` answer: it never gets one."""
    send = activities(sessions, tmp_path, CAP).send_email
    first = ActivityEnvironment().run(send, request("welcome"))
    legacy = ActivityEnvironment().run(send, request("abandoned_cart", may_defer=False))
    assert (first.status, legacy.status) == ("sent", "sent")


@pytest.mark.parametrize(
    ("moment", "morning"),
    [
        # 23:00 in Paris the night clocks go forward (29 March 2026): 09:00 is CEST, UTC+2.
        (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        # 23:00 in Paris the night clocks go back (25 October 2026): 09:00 is CET, UTC+1.
        (datetime(2026, 10, 24, 21, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_a_dst_change_end_at_nine_paris_time(
    sessions: sessionmaker[Session], tmp_path: Path, moment: datetime, morning: datetime
) -> None:
    night = CAP.model_copy(update={"quiet_hours": QuietHours(time(21), time(9))})
    held = ActivityEnvironment().run(
        activities(sessions, tmp_path, night, moment).send_email, request("welcome")
    )
    assert (held.status, held.reason, held.not_before) == ("deferred", "quiet_hours", morning)
