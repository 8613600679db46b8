"""Birthdays: the formats shops send, the day one is kept, and what the intake stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.events import EventError
from tests.harness import Shop
from triggermail.birthdays import NO_YEAR, birthday_on, month_day, parse_birthday
from triggermail.store import Customer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1990-02-28", date(1990, 2, 28)),
        (" 1988-12-31 ", date(1988, 12, 31)),
        ("--02-29", date(NO_YEAR, 2, 29)),  # vCard's yearless form
        ("--07-04", date(NO_YEAR, 7, 4)),
        ("1990-04-01T00:00:00Z", date(1990, 4, 1)),  # a timestamp: its date part counts
        ("1990-04-01T23:30:00+02:00", date(1990, 4, 1)),
        ("1992-02-29", date(1992, 2, 29)),
    ],
)
def test_the_formats_shops_send(value: str, expected: date) -> None:
    assert parse_birthday(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "1990-02-30",
        "1991-02-29",
        "--13-01",
        "--02-30",
        "28/02/1990",
        "soon",
        19900228,
    ],
)
def test_what_is_not_a_birthday_is_none(value: object) -> None:
    assert parse_birthday(value) is None


def test_29_february_is_kept_on_28_february_in_other_years() -> None:
    leap_baby = date(1992, 2, 29)
    assert birthday_on(leap_baby, 2027) == date(2027, 2, 28)
    assert birthday_on(leap_baby, 2028) == date(2028, 2, 29)
    assert birthday_on(date(NO_YEAR, 2, 29), 2027) == date(2027, 2, 28)  # no year given


def test_other_days_are_kept_on_the_day() -> None:
    assert birthday_on(date(1990, 2, 28), 2028) == date(2028, 2, 28)
    assert birthday_on(date(1990, 3, 1), 2027) == date(2027, 3, 1)
    assert birthday_on(date(1990, 12, 31), 2027) == date(2027, 12, 31)
    assert month_day(date(1990, 3, 1)) == "03-01"


# -- the intake ------------------------------------------------------------------------------


@pytest.fixture
async def shop(env: WorkflowEnvironment, store_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, store_url, tmp_path) as shop:
        yield shop


def birthday_of(shop: Shop, customer_id: str) -> tuple[date | None, str | None]:
    with shop.sessions() as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        return customer.birthday, customer.birthday_md


async def test_identify_stores_the_birthday_and_its_day(shop: Shop) -> None:
    await shop.identify("c-leap", email="leap@example.com", birthday="1992-02-29")
    await shop.identify("c-noyear", email="noyear@example.com", birthday="--12-24")

    assert birthday_of(shop, "c-leap") == (date(1992, 2, 29), "02-29")
    assert birthday_of(shop, "c-noyear") == (date(NO_YEAR, 12, 24), "12-24")

    await shop.identify("c-leap", birthday="1992-03-01T08:00:00Z")  # corrected
    assert birthday_of(shop, "c-leap") == (date(1992, 3, 1), "03-01")


@pytest.mark.parametrize("bad", ["1990-02-30", "31/12/1990", "tomorrow"])
async def test_a_bad_birthday_is_refused_by_name(shop: Shop, bad: str) -> None:
    await shop.identify("c-1", email="c1@example.com", birthday="1990-05-02")
    with pytest.raises(EventError) as refused:
        await shop.identify("c-1", birthday=bad)

    assert [path for path, _ in refused.value.problems] == ["traits.birthday"]
    assert "1990-02-28" in str(refused.value)  # says how to write one
    assert birthday_of(shop, "c-1") == (date(1990, 5, 2), "05-02")  # the good one stays
