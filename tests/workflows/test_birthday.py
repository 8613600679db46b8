"""Birthday and anniversary, as customers experience them, on the time-skipping server.

Journeys are started the way the daily sweep starts them: ``deliver`` with the year's ID,
once ever. Days are chosen relative to the server's clock (it is shared between tests);
each e-mail is checked at its exact simulated time and in the customer's own timezone.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from starter.starting import StartJourney, deliver, journeys_of
from tests.harness import Shop
from triggermail.ids import anniversary_id, birthday_id
from triggermail.journeys import Guardrails
from triggermail.store import Coupon
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult, OccasionInput

HISTORIES = Path(__file__).parent.parent / "histories"
NINE = time(9)
TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}
CODE = re.compile(r"\b[A-Z2-9]{5}-[A-Z2-9]{5}\b")


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=("birthday",)) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer id per test: the server is shared, and each year's ID is used once."""
    return f"c-{uuid.uuid4().hex[:8]}"


def nine_local(day: date, timezone: str) -> datetime:
    """What the sweep computes as ``send_at``: 09:00 on the day in the zone, as UTC."""
    return datetime.combine(day, NINE, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


async def day_after_tomorrow(shop: Shop, timezone: str) -> date:
    return (await shop.now()).astimezone(ZoneInfo(timezone)).date() + timedelta(days=2)


async def next_dst_change(shop: Shop, timezone: str) -> date:
    """The next day on which the zone's clocks change (before 09:00: 02:00 or 03:00)."""
    zone = ZoneInfo(timezone)
    day = (await shop.now()).astimezone(zone).date() + timedelta(days=2)
    while True:
        midnight = datetime.combine(day, time(0), tzinfo=zone).utcoffset()
        if midnight != datetime.combine(day, NINE, tzinfo=zone).utcoffset():
            return day
        day += timedelta(days=1)


async def customer(
    shop: Shop,
    c: str,
    *,
    timezone: str,
    birthday: date | None = None,
    name: str | None = "Aiko",
    consent: bool = True,
) -> None:
    traits: dict[str, object] = {"email": f"{c}@example.com", "timezone": timezone}
    if name:
        traits["firstName"] = name
    if birthday:
        traits["birthday"] = birthday.isoformat()
    await shop.identify(c, marketing_consent=consent, **traits)


async def start(
    shop: Shop,
    c: str,
    day: date,
    *,
    timezone: str,
    occasion: str = "birthday",
    years: int | None = None,
) -> str:
    """Start the occasion's journey as the daily sweep does; its workflow ID."""
    workflow_id = (birthday_id if occasion == "birthday" else anniversary_id)(c, day.year)
    await deliver(
        shop.env.client,
        StartJourney(
            journey="birthday",
            workflow_id=workflow_id,
            customer_id=c,
            input=OccasionInput(
                customer_id=c,
                occasion=occasion,
                day=day.isoformat(),
                send_at=nine_local(day, timezone),
                spec=shop.journeys.spec("birthday"),
                years=years,
                timezone=timezone,
            ),
            once=True,
        ),
        task_queue=shop.task_queue,
    )
    shop.touched.add(workflow_id)
    return workflow_id


async def run_id(shop: Shop, workflow_id: str) -> str:
    """The run the ID's latest history belongs to."""
    history = await shop.handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return str(started.original_execution_run_id)


def born_on(day: date) -> date:
    return day.replace(year=1990)


def codes(text: str) -> list[str]:
    return CODE.findall(text)


async def test_greeting_with_gift_at_nine_in_tokyo(shop: Shop, c: str) -> None:
    tokyo = "Asia/Tokyo"
    day = await day_after_tomorrow(shop, tokyo)
    await customer(shop, c, timezone=tokyo, birthday=born_on(day))
    workflow_id = await start(shop, c, day, timezone=tokyo)
    await shop.sleep(hours=1)

    status = await shop.handle(workflow_id).query("status")
    send_at = nine_local(day, tokyo)
    assert status["journey"] == "birthday" and status["next_step"] == "birthday"
    assert status["waiting_for"] == "an unsubscribe" and status["timezone"] == tokyo
    assert status["next_send_local"].endswith("(09:00 Asia/Tokyo)")
    assert send_at.strftime("%Y-%m-%d %H:%M UTC") in status["next_send_local"]

    await shop.sleep(days=3)
    (mail,) = shop.outbox_mail()
    assert (mail.to, mail.step, mail.subject) == (
        f"Aiko <{c}@example.com>",
        "birthday",
        "Happy birthday, Aiko!",
    )
    assert mail.at - send_at == pytest.approx(timedelta(0), abs=timedelta(seconds=2))
    assert mail.at.astimezone(ZoneInfo(tokyo)).strftime("%Y-%m-%d %H:%M") == f"{day} 09:00"
    assert "15% off your next order" in mail.text and "Treat yourself" in mail.text
    (code,) = codes(mail.text)
    (row,) = shop.ledger()
    assert (row.status, row.coupon_code, row.journey, row.step) == (
        "sent",
        code,
        "birthday",
        "birthday",
    )
    with shop.sessions() as session:
        coupon = session.get(Coupon, code)
        assert coupon is not None and (coupon.customer_id, coupon.percent) == (c, 15)
        assert coupon.expires_at - mail.at == pytest.approx(
            timedelta(days=14), abs=timedelta(seconds=2)
        )
    assert await shop.handle(workflow_id).result() == JourneyResult(
        exit_reason="completed", sent=["birthday"]
    )

    history = await shop.handle(workflow_id).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        (HISTORIES / "birthday-greeting-2026-11.json").write_text(history.to_json())


@pytest.mark.parametrize(
    ("timezone", "dst_day"),
    [("America/Los_Angeles", False), ("Europe/Paris", True)],
    ids=["los-angeles", "paris-dst-day"],
)
async def test_greeting_at_nine_in_the_customers_own_timezone(
    shop: Shop, c: str, timezone: str, dst_day: bool
) -> None:
    day = await (next_dst_change(shop, timezone) if dst_day else day_after_tomorrow(shop, timezone))
    zone = ZoneInfo(timezone)
    if dst_day:  # the clocks changed that night: 09:00 is not 24 h after the day before's
        before = datetime.combine(day - timedelta(days=1), NINE, tzinfo=zone).utcoffset()
        assert datetime.combine(day, NINE, tzinfo=zone).utcoffset() != before
    await customer(shop, c, timezone=timezone, birthday=born_on(day), name="Léa")
    workflow_id = await start(shop, c, day, timezone=timezone)
    until = nine_local(day, timezone) - await shop.now()
    await shop.sleep(seconds=(until - timedelta(minutes=1)).total_seconds())
    assert shop.outbox_mail() == []  # a minute before 09:00: nothing yet

    await shop.sleep(days=1)
    (mail,) = shop.outbox_mail()
    assert mail.subject == "Happy birthday, Léa!"
    assert mail.at - nine_local(day, timezone) == pytest.approx(
        timedelta(0), abs=timedelta(seconds=2)
    )
    assert mail.at.astimezone(zone).strftime("%Y-%m-%d %H:%M") == f"{day} 09:00"
    assert await shop.handle(workflow_id).result() == JourneyResult(
        exit_reason="completed", sent=["birthday"]
    )


async def test_each_greeting_has_its_own_gift_code(shop: Shop) -> None:
    paris = "Europe/Paris"
    day = await day_after_tomorrow(shop, paris)
    people = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for person in people:
        await customer(shop, person, timezone=paris, birthday=born_on(day), name=None)
        await start(shop, person, day, timezone=paris)
    await shop.sleep(days=3)

    mail = shop.outbox_mail()
    assert sorted(m.to for m in mail) == sorted(f"{p}@example.com" for p in people)
    assert {m.subject for m in mail} == {"Happy birthday from Your Shop!"}  # no name
    found = {m.to: codes(m.text) for m in mail}
    assert all(len(found_codes) == 1 for found_codes in found.values())
    assert len({found_codes[0] for found_codes in found.values()}) == 3
    with shop.sessions() as session:
        owners = {row.code: row.customer_id for row in session.scalars(select(Coupon))}
    assert {code: f"{owner}@example.com" for code, owner in owners.items()} == {
        found_codes[0]: to for to, found_codes in found.items()
    }


async def test_anniversary_thanks_for_n_years_and_an_order_does_not_end_it(
    shop: Shop, c: str
) -> None:
    los_angeles = "America/Los_Angeles"
    day = await day_after_tomorrow(shop, los_angeles)
    await customer(shop, c, timezone=los_angeles, name="Ben")
    first = datetime.combine(day.replace(year=day.year - 3), time(19), tzinfo=UTC)
    await shop.send(
        {
            "type": "track",
            "userId": c,
            "event": "Order Completed",
            "timestamp": first.isoformat(),
            "properties": {"order_id": f"{c}-first", "total": 24.9, "products": [TEE]},
        }
    )
    workflow_id = await start(shop, c, day, timezone=los_angeles, occasion="anniversary", years=3)
    await shop.sleep(hours=2)
    await shop.track(c, "Order Completed", order_id=f"{c}-again", total=24.9, products=[TEE])
    await shop.sleep(days=3)

    (mail,) = shop.outbox_mail()
    assert (mail.step, mail.subject) == ("anniversary", "Ben, thank you for 3 years with us")
    assert "3 years ago today you placed your first order at Your Shop." in mail.text
    assert codes(mail.text) == []  # the anniversary step has no gift by default
    assert mail.at - nine_local(day, los_angeles) == pytest.approx(
        timedelta(0), abs=timedelta(seconds=2)
    )
    assert await shop.handle(workflow_id).result() == JourneyResult(
        exit_reason="completed", sent=["anniversary"]
    )


async def test_one_greeting_a_year_whatever_the_sweep_does(shop: Shop, c: str) -> None:
    tokyo = "Asia/Tokyo"
    day = await day_after_tomorrow(shop, tokyo)
    await customer(shop, c, timezone=tokyo, birthday=born_on(day))
    workflow_id = await start(shop, c, day, timezone=tokyo)
    first_run = await run_id(shop, workflow_id)
    await start(shop, c, day, timezone=tokyo)  # the sweep again, while it waits
    await shop.sleep(days=3)
    await start(shop, c, day, timezone=tokyo)  # and again, after it sent
    await shop.sleep(days=3)

    assert [m.step for m in shop.outbox_mail()] == ["birthday"]
    assert await run_id(shop, workflow_id) == first_run
    assert [row.status for row in shop.ledger()] == ["sent"]


async def test_an_unsubscribe_before_the_day_ends_it(shop: Shop, c: str) -> None:
    paris = "Europe/Paris"
    day = await day_after_tomorrow(shop, paris)
    await customer(shop, c, timezone=paris, birthday=born_on(day))
    workflow_id = await start(shop, c, day, timezone=paris)
    with shop.sessions() as session:
        assert workflow_id in journeys_of(session, c, await shop.now())["birthday"]
    await shop.sleep(hours=3)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=3)

    assert shop.outbox_mail() == [] and shop.ledger() == []
    assert await shop.handle(workflow_id).result() == JourneyResult(exit_reason="unsubscribed")


async def test_no_consent_no_greeting(shop: Shop, c: str) -> None:
    paris = "Europe/Paris"
    day = await day_after_tomorrow(shop, paris)
    await customer(shop, c, timezone=paris, birthday=born_on(day), consent=False)
    workflow_id = await start(shop, c, day, timezone=paris)
    await shop.sleep(days=3)

    assert shop.outbox_mail() == []
    assert [(row.status, row.reason) for row in shop.ledger()] == [("skipped", "no_consent")]
    assert await shop.handle(workflow_id).result() == JourneyResult(exit_reason="no_consent")


async def test_a_corrected_birthday_is_not_greeted_on_the_old_day(shop: Shop, c: str) -> None:
    paris = "Europe/Paris"
    day = await day_after_tomorrow(shop, paris)
    await customer(shop, c, timezone=paris, birthday=born_on(day))
    workflow_id = await start(shop, c, day, timezone=paris)
    await shop.identify(c, birthday=born_on(day + timedelta(days=40)).isoformat())
    await shop.sleep(days=3)

    assert shop.outbox_mail() == []
    assert await shop.handle(workflow_id).result() == JourneyResult(exit_reason="not_their_day")


# -- the guardrails: marketing like the rest, but a greeting belongs to its day -------------


@pytest.fixture
async def guarded(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """The default guardrails: 16 h between e-mails, 4 a week, quiet 21:00-09:00."""
    async with Shop(
        env, sqlite_url, tmp_path, enabled=("birthday",), guardrails=Guardrails()
    ) as shop:
        yield shop


def earlier_mail(shop: Shop, c: str, at: datetime) -> None:
    """Another journey's marketing e-mail, sent to the customer at ``at``."""
    shop.record_sent(
        c, journey="abandoned_cart", step="reminder", workflow_id=f"abandoned-cart/{c}", at=at
    )


async def test_greeting_held_by_the_cap_goes_later_the_same_day(guarded: Shop, c: str) -> None:
    paris = "Europe/Paris"
    day = await day_after_tomorrow(guarded, paris)
    await customer(guarded, c, timezone=paris, birthday=born_on(day))
    evening_before = datetime.combine(
        day - timedelta(days=1), time(20), tzinfo=ZoneInfo(paris)
    ).astimezone(UTC)
    earlier_mail(guarded, c, evening_before)  # 13 h before 09:00: the 16 h gap holds it
    workflow_id = await start(guarded, c, day, timezone=paris)
    await guarded.sleep(days=3)

    (mail,) = guarded.outbox_mail()
    assert mail.at - (evening_before + timedelta(hours=16)) == pytest.approx(
        timedelta(0), abs=timedelta(seconds=2)
    )
    assert mail.at.astimezone(ZoneInfo(paris)).strftime("%Y-%m-%d %H:%M") == f"{day} 12:00"
    assert await guarded.handle(workflow_id).result() == JourneyResult(
        exit_reason="completed", sent=["birthday"]
    )


async def test_greeting_the_cap_would_hold_past_its_day_is_skipped(guarded: Shop, c: str) -> None:
    tokyo = "Asia/Tokyo"
    day = await day_after_tomorrow(guarded, tokyo)
    await customer(guarded, c, timezone=tokyo, birthday=born_on(day))
    earlier_mail(guarded, c, nine_local(day, tokyo) - timedelta(minutes=30))  # 08:30 that day
    workflow_id = await start(guarded, c, day, timezone=tokyo)
    await guarded.sleep(days=5)

    # Held to 00:30, then quiet hours to 09:00 the next day: a day late. Not sent at all.
    assert [m.subject for m in guarded.outbox_mail()] == []
    row = next(row for row in guarded.ledger() if row.journey == "birthday")
    assert (row.status, row.reason, row.sent_at) == ("skipped", "too_late", None)
    assert await guarded.handle(workflow_id).result() == JourneyResult(exit_reason="too_late")
