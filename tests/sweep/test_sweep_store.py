"""The sweep's store logic on SQLite and PostgreSQL: who it finds on each side of every
threshold, whom it skips and why, and that a second sweep of a day starts nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.sweep.kit import FakeTemporal, at, customer, journeys, sweep, sweeper
from triggermail.journeys import Segments, Sweep
from triggermail.store import (
    Customer,
    JourneyEntry,
    Suppression,
    SweepRun,
    make_engine,
    make_session_factory,
)
from workflows.sweep import SweepCursor
from workflows.types import LapsedInput, OccasionInput

D = date(2026, 11, 23)
NOW = at(D, 2)  # the Schedule's default time


@pytest.fixture
def sessions(store_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(store_url)
    yield make_session_factory(engine)
    engine.dispose()


def add(sessions: sessionmaker[Session], *rows: object) -> None:
    with sessions.begin() as session:
        session.add_all(rows)


def ago(days: int, hour: int = 15) -> datetime:
    return at(D - timedelta(days=days), hour)


def lapsed_customers(sessions: sessionmaker[Session]) -> None:
    add(
        sessions,
        *(customer(f"r{days}", last_order=ago(days)) for days in (89, 90, 91)),
        *(customer(f"w{days}", last_order=ago(days)) for days in (179, 180, 181)),
        customer("fresh", last_order=ago(3)),
        customer("never"),
    )


async def test_first_sweep_finds_who_crossed_each_threshold_on_the_day(
    sessions: sessionmaker[Session],
) -> None:
    lapsed_customers(sessions)
    temporal = FakeTemporal()

    plan, counts = await sweep(sweeper(sessions, journeys(), temporal, NOW), D)

    assert (plan.first_day, plan.day) == ("2026-11-23", "2026-11-23")
    day90, day180 = (D - timedelta(days=90)).isoformat(), (D - timedelta(days=180)).isoformat()
    assert sorted(temporal.started) == [f"reactivation/r90/{day90}", f"win-back/w180/{day180}"]
    reactivation = temporal.started[f"reactivation/r90/{day90}"]
    assert reactivation.workflow == "ReactivationWorkflow"
    assert isinstance(reactivation.input, LapsedInput)
    assert reactivation.input.entry_key == day90
    assert reactivation.input.last_order_at == ago(90)
    assert reactivation.input.segment == "one_time"
    assert reactivation.input.spec.name == "reactivation"
    assert reactivation.options["task_queue"] == "tq-sweep"
    assert reactivation.options["static_summary"] == "Reactivation · customer r90"
    assert temporal.started[f"win-back/w180/{day180}"].workflow == "WinBackWorkflow"
    assert counts["reactivation"].matched == counts["reactivation"].started == 1
    assert counts["win_back"].matched == counts["win_back"].started == 1


async def test_a_sweep_covers_the_days_since_the_last_one(
    sessions: sessionmaker[Session],
) -> None:
    lapsed_customers(sessions)
    earlier = D - timedelta(days=2)
    add(sessions, SweepRun(day=earlier, started_at=at(earlier, 2), finished_at=at(earlier, 2)))
    temporal = FakeTemporal()

    plan, _ = await sweep(sweeper(sessions, journeys(), temporal, NOW), D)

    assert plan.first_day == (D - timedelta(days=1)).isoformat()
    customers = sorted(workflow_id.split("/")[1] for workflow_id in temporal.started)
    assert customers == ["r90", "r91", "w180", "w181"]


async def test_a_second_sweep_of_the_day_starts_nothing(sessions: sessionmaker[Session]) -> None:
    lapsed_customers(sessions)
    temporal = FakeTemporal()
    activities = sweeper(sessions, journeys(), temporal, NOW)
    await sweep(activities, D)
    first = dict(temporal.started)

    _, counts = await sweep(activities, D)

    assert temporal.started == first
    assert counts["reactivation"].started == 0
    assert counts["reactivation"].already_started == 1
    assert counts["win_back"].already_started == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(JourneyEntry)) == 2
        run = session.get(SweepRun, D)
        assert run is not None and run.finished_at is not None
        assert run.counts["reactivation"]["already_started"] == 1


async def test_a_running_journey_answers_the_start_as_started_before(
    sessions: sessionmaker[Session],
) -> None:
    lapsed_customers(sessions)
    temporal = FakeTemporal()
    activities = sweeper(sessions, journeys(), temporal, NOW)
    await sweep(activities, D)
    temporal.running.update(temporal.started)

    _, counts = await sweep(activities, D)

    assert counts["reactivation"].already_started == counts["win_back"].already_started == 1


async def test_whom_the_send_guard_would_stop_is_not_started(
    sessions: sessionmaker[Session],
) -> None:
    lapse = ago(90)
    add(
        sessions,
        customer("ok", last_order=lapse),
        customer("no-email", last_order=lapse, email=None),
        customer("no-consent", last_order=lapse, consent=False),
        customer("unsubscribed", last_order=lapse),
        customer("bounced", last_order=lapse, email="Dead@Example.com"),
        customer("sunset", last_order=lapse),
        customer("in-win-back", last_order=lapse),
        Suppression(customer_id="unsubscribed", reason="unsubscribed", source="link"),
        Suppression(email="dead@example.com", reason="bounced", source="sendgrid"),
        Suppression(customer_id="sunset", reason="sunset", source="link"),
    )
    temporal = FakeTemporal()
    key = lapse.date().isoformat()
    temporal.started[f"win-back/in-win-back/{key}"] = None  # type: ignore[assignment]
    temporal.running.add(f"win-back/in-win-back/{key}")

    _, counts = await sweep(sweeper(sessions, journeys(), temporal, NOW), D)

    started = [i for i in temporal.started if i.startswith("reactivation/")]
    assert started == [f"reactivation/ok/{key}"]
    assert counts["reactivation"].matched == 7
    assert counts["reactivation"].skipped == {
        "no_email": 1,
        "no_consent": 1,
        "suppressed:unsubscribed": 1,
        "suppressed:bounced": 1,
        "suppressed:sunset": 1,
        "other_running": 1,
    }
    with sessions() as session:
        entries = session.scalars(select(JourneyEntry.customer_id)).all()
    assert entries == ["ok"]


async def test_a_finished_journey_of_the_other_kind_does_not_stop_this_one(
    sessions: sessionmaker[Session],
) -> None:
    add(sessions, customer("c", last_order=ago(180)))
    temporal = FakeTemporal()
    key = ago(180).date().isoformat()
    temporal.started[f"reactivation/c/{key}"] = None  # type: ignore[assignment]  # closed

    await sweep(sweeper(sessions, journeys(), temporal, NOW), D)

    assert f"win-back/c/{key}" in temporal.started


async def test_segment_at_entry_is_recorded_and_kept(sessions: sessionmaker[Session]) -> None:
    lapse = ago(90)
    add(
        sessions,
        customer("vip", last_order=lapse, orders=5, spent="5000"),
        customer("repeat", last_order=lapse, orders=2, spent="80"),
        customer("once", last_order=lapse, orders=1, spent="40"),
        *(customer(f"other{i}", last_order=ago(10), spent="30") for i in range(20)),
    )
    config = journeys(segments=Segments(vip_percent=5, vip_min_orders=3))
    temporal = FakeTemporal()
    activities = sweeper(sessions, config, temporal, NOW)
    await sweep(activities, D)

    segments = {
        i.input.customer_id: i.input.segment
        for i in temporal.started.values()
        if isinstance(i.input, LapsedInput)
    }
    assert segments == {"vip": "vip", "repeat": "repeat", "once": "one_time"}
    with sessions() as session:
        query = select(JourneyEntry.customer_id, JourneyEntry.segment)
        recorded = {customer_id: segment for customer_id, segment in session.execute(query)}
        entry = session.get(JourneyEntry, f"reactivation/vip/{lapse.date().isoformat()}")
    assert recorded == segments
    assert entry is not None and entry.sweep_date == D and entry.journey == "reactivation"


async def test_a_second_run_keeps_the_recorded_segments_and_records_the_new_entries(
    sessions: sessionmaker[Session],
) -> None:
    lapse = ago(90)
    add(
        sessions,
        customer("vip", last_order=lapse, orders=5, spent="5000"),
        *(customer(f"other{i}", last_order=ago(10), spent="30") for i in range(20)),
    )
    activities = sweeper(
        sessions, journeys(segments=Segments(vip_percent=5, vip_min_orders=3)), FakeTemporal(), NOW
    )

    def run() -> dict[str, str | None]:
        plan = activities.store.plan(D.isoformat())
        page = activities.store.read_page(plan, SweepCursor("reactivation"))
        recorded = activities.store.record_entries(plan, page.candidates)
        return {
            c.customer_id: c.input.segment for c in recorded if isinstance(c.input, LapsedInput)
        }

    assert run() == {"vip": "vip"}
    with sessions.begin() as session:
        vip = session.get(Customer, "vip")
        assert vip is not None
        vip.total_spent = Decimal("1")  # a refund after the first run: "repeat" now
        session.add(customer("late", last_order=lapse))  # an order reported late

    assert run() == {"vip": "vip", "late": "one_time"}
    with sessions() as session:
        query = select(JourneyEntry.customer_id, JourneyEntry.segment)
        assert dict(session.execute(query).all()) == {"vip": "vip", "late": "one_time"}


async def test_pages_find_every_match_once(sessions: sessionmaker[Session]) -> None:
    # Ties on the last order's time across page boundaries, too.
    add(sessions, *(customer(f"c{i:02}", last_order=ago(90, hour=i % 3)) for i in range(35)))
    temporal = FakeTemporal()
    config = journeys(sweep=Sweep(page_size=10))

    _, counts = await sweep(sweeper(sessions, config, temporal, NOW), D)

    assert counts["reactivation"].matched == counts["reactivation"].started == 35
    assert len(temporal.started) == 35


async def test_win_back_after_the_shops_cadence(sessions: sessionmaker[Session]) -> None:
    # Customers order every 30 days on average: lapsed at 2 x 30 = 60 days.
    add(
        sessions,
        customer("a", first_order=ago(400), last_order=ago(340), orders=3),  # 30 days apart
        customer("b", first_order=ago(100), last_order=ago(60), orders=2),  # 40, lapsed today
        customer("c", first_order=ago(300), last_order=ago(280), orders=2),  # 20
        customer("d", last_order=ago(59)),
    )
    base = journeys()
    assert base.win_back is not None
    config = journeys(win_back=base.win_back.model_copy(update={"cadence_factor": 2.0}))
    temporal = FakeTemporal()

    plan, _ = await sweep(sweeper(sessions, config, temporal, NOW), D)

    assert plan.average_gap_s == pytest.approx(30 * 86400)
    assert plan.win_back_after_s == 60 * 86400
    assert [i for i in temporal.started if i.startswith("win-back/")] == [
        f"win-back/b/{ago(60).date().isoformat()}"
    ]


# -- birthdays and anniversaries ----------------------------------------------------------

B = date(2027, 2, 27)
"""Swept the day before 28 February 2027, a year without 29 February."""


def occasions(temporal: FakeTemporal) -> dict[str, OccasionInput]:
    return {i: s.input for i, s in temporal.started.items() if isinstance(s.input, OccasionInput)}


async def test_birthdays_of_the_next_day_at_nine_in_their_own_timezone(
    sessions: sessionmaker[Session],
) -> None:
    born = date(1990, 2, 28)
    add(
        sessions,
        customer("kiritimati", timezone="Pacific/Kiritimati", birthday=born),
        customer("pago-pago", timezone="Pacific/Pago_Pago", birthday=born),
        customer("unknown-tz", birthday=born),
        customer("bad-tz", timezone="Mars/Olympus", birthday=born),
        customer("leap", timezone="Europe/Paris", birthday=date(1992, 2, 29)),
        customer("today", birthday=date(1990, 2, 27)),
        customer("march", birthday=date(1990, 3, 1)),
        customer("no-consent", birthday=born, consent=False),
    )
    temporal = FakeTemporal()
    now = at(B, 2)

    _, counts = await sweep(sweeper(sessions, journeys(), temporal, now), B)

    found = occasions(temporal)
    assert sorted(found) == [
        "birthday/bad-tz/2027",
        "birthday/kiritimati/2027",
        "birthday/leap/2027",
        "birthday/pago-pago/2027",
        "birthday/unknown-tz/2027",
    ]
    assert {o.day for o in found.values()} == {"2027-02-28"}
    send_at = {i.split("/")[1]: o.send_at for i, o in found.items()}
    # 09:00 on 28 February: UTC+14 is 19:00 UTC the day before, UTC-11 20:00 UTC on the day.
    assert send_at["kiritimati"] == datetime(2027, 2, 27, 19, tzinfo=UTC)
    assert send_at["pago-pago"] == datetime(2027, 2, 28, 20, tzinfo=UTC)
    # The shop's timezone (Europe/London: UTC in February) when the customer's is unknown.
    assert send_at["unknown-tz"] == send_at["bad-tz"] == datetime(2027, 2, 28, 9, tzinfo=UTC)
    assert send_at["leap"] == datetime(2027, 2, 28, 8, tzinfo=UTC)
    assert all(moment > now for moment in send_at.values())
    kiritimati = found["birthday/kiritimati/2027"]
    assert (kiritimati.occasion, kiritimati.years, kiritimati.spec.name) == (
        "birthday",
        None,
        "birthday",
    )
    assert temporal.started["birthday/kiritimati/2027"].workflow == "BirthdayWorkflow"
    assert counts["birthday"].matched == 6 and counts["birthday"].skipped == {"no_consent": 1}


async def test_29_february_birthdays_on_the_day_in_leap_years(
    sessions: sessionmaker[Session],
) -> None:
    add(
        sessions,
        customer("leap", birthday=date(1992, 2, 29)),
        customer("feb28", birthday=date(1990, 2, 28)),
    )
    temporal = FakeTemporal()
    day = date(2028, 2, 28)

    await sweep(sweeper(sessions, journeys(), temporal, at(day, 2)), day)

    assert {i: o.day for i, o in occasions(temporal).items()} == {
        "birthday/leap/2028": "2028-02-29"
    }


async def test_anniversaries_of_the_first_order_with_years(
    sessions: sessionmaker[Session],
) -> None:
    add(
        sessions,
        customer("three", first_order=at(date(2024, 2, 28)), last_order=at(date(2026, 6, 1))),
        customer("one", first_order=at(date(2026, 2, 28)), last_order=at(date(2026, 2, 28))),
        customer("leap", first_order=at(date(2024, 2, 29)), last_order=at(date(2025, 1, 1))),
        customer("other-day", first_order=at(date(2025, 2, 27)), last_order=at(date(2025, 2, 27))),
    )
    temporal = FakeTemporal()

    await sweep(sweeper(sessions, journeys(), temporal, at(B, 2)), B)

    years = {i: o.years for i, o in occasions(temporal).items()}
    assert years == {
        "anniversary/three/2027": 3,
        "anniversary/one/2027": 1,
        "anniversary/leap/2027": 3,
    }
    assert {o.occasion for o in occasions(temporal).values()} == {"anniversary"}


async def test_a_late_sweep_sends_no_birthday_whose_day_is_over(
    sessions: sessionmaker[Session],
) -> None:
    # Sweeps missed on 25 and 26 February; this one runs on the 27th at 12:00 UTC.
    before = date(2027, 2, 24)
    add(
        sessions,
        SweepRun(day=before, started_at=at(before, 2), finished_at=at(before, 2)),
        customer("kiritimati-27", timezone="Pacific/Kiritimati", birthday=date(1990, 2, 27)),
        customer("pago-pago-27", timezone="Pacific/Pago_Pago", birthday=date(1990, 2, 27)),
        customer("missed-26", birthday=date(1990, 2, 26)),
        customer("tomorrow", birthday=date(1990, 2, 28)),
    )
    temporal = FakeTemporal()

    _, counts = await sweep(sweeper(sessions, journeys(), temporal, at(B, 12)), B)

    assert sorted(occasions(temporal)) == ["birthday/pago-pago-27/2027", "birthday/tomorrow/2027"]
    assert counts["birthday"].skipped == {"day_over": 1}


async def test_journeys_switched_off_are_not_swept(sessions: sessionmaker[Session]) -> None:
    lapsed_customers(sessions)
    base = journeys()
    assert base.reactivation is not None
    config = journeys(reactivation=base.reactivation.model_copy(update={"enabled": False}))
    temporal = FakeTemporal()

    plan, _ = await sweep(sweeper(sessions, config, temporal, NOW), D)

    assert plan.kinds == ["win_back", "birthday", "anniversary"]
    assert all(i.startswith("win-back/") for i in temporal.started)


def test_never_customers_are_untouched(sessions: sessionmaker[Session]) -> None:
    add(sessions, customer("never"))
    with sessions() as session:
        assert session.scalar(select(Customer.last_order_at)) is None


async def test_the_sweep_draws_each_customers_holdout_and_variants(
    sessions: sessionmaker[Session],
) -> None:
    from triggermail.journey_tables import Variant
    from triggermail.variants import assign_variant, in_holdout

    add(sessions, *(customer(f"r{i}", last_order=ago(90)) for i in range(40)))
    config = journeys()
    assert config.reactivation is not None
    step = config.reactivation.steps[0].model_copy(
        update={"variants": [Variant(name="short", after=timedelta(minutes=5))]}
    )
    config = config.model_copy(
        update={
            "reactivation": config.reactivation.model_copy(
                update={"holdout": 0.25, "steps": [step]}
            )
        }
    )
    temporal = FakeTemporal()

    await sweep(sweeper(sessions, config, temporal, NOW), D)

    drawn = {}
    for started in temporal.started.values():
        assert isinstance(started.input, LapsedInput)
        (spec,) = started.input.spec.steps
        drawn[started.input.customer_id] = (spec.variant, spec.after_s)
    assert len(drawn) == 40
    for customer_id, (variant, after_s) in drawn.items():
        if in_holdout("reactivation", customer_id, 0.25):
            assert (variant, after_s) == ("holdout", 3600)
        else:
            expected = assign_variant(
                "reactivation.still_with_us", customer_id, [("control", 1), ("short", 1)]
            )
            assert (variant, after_s) == (expected, 300 if expected == "short" else 3600)
    assert {variant for variant, _ in drawn.values()} == {"holdout", "control", "short"}
