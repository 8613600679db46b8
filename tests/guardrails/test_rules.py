"""The guardrails' rules on their own: quiet hours in local time, the config, the tokens."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from activities.guardrails import quiet_end
from triggermail.journeys import Guardrails, JourneysConfigError, QuietHours, load_journeys
from triggermail.links import UnsubscribeLinks

NIGHT = QuietHours(time(21), time(9))
PARIS = ZoneInfo("Europe/Paris")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "moment", "local_end"),
    [
        # Tokyo (UTC+9, no DST): 22:30 local is quiet until 09:00 the next morning.
        ("Asia/Tokyo", utc(2026, 11, 23, 13, 30), datetime(2026, 11, 24, 9)),
        # Los Angeles (UTC-8 in winter): 06:00 local is quiet until 09:00 the same day.
        ("America/Los_Angeles", utc(2026, 11, 23, 14), datetime(2026, 11, 23, 9)),
        # Paris springs forward on 29 March 2026 at 02:00: the night lasts an hour less.
        ("Europe/Paris", utc(2026, 3, 28, 21), datetime(2026, 3, 29, 9)),
        # Paris falls back on 25 October 2026 at 03:00: the night lasts an hour more.
        ("Europe/Paris", utc(2026, 10, 24, 20), datetime(2026, 10, 25, 9)),
    ],
)
def test_a_moment_in_quiet_hours_waits_for_nine_local(
    zone: str, moment: datetime, local_end: datetime
) -> None:
    end = quiet_end(moment, NIGHT, ZoneInfo(zone))
    assert end is not None
    assert end.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == local_end


def test_across_dst_the_end_moves_in_utc_and_stays_at_nine_local() -> None:
    spring = quiet_end(utc(2026, 3, 28, 21), NIGHT, PARIS)
    autumn = quiet_end(utc(2026, 10, 24, 20), NIGHT, PARIS)
    assert spring == utc(2026, 3, 29, 7)  # CEST, UTC+2
    assert autumn == utc(2026, 10, 25, 8)  # CET, UTC+1
    # The night of the change is 11 h in spring and 13 h in autumn, local start to end.
    assert spring - utc(2026, 3, 28, 20) == timedelta(hours=11)
    assert autumn - utc(2026, 10, 24, 19) == timedelta(hours=13)


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("Asia/Tokyo", utc(2026, 11, 23, 3)),  # 12:00 in Tokyo
        ("America/Los_Angeles", utc(2026, 11, 23, 20)),  # 12:00 in Los Angeles
        ("Europe/Paris", utc(2026, 3, 29, 7)),  # 09:00 the morning DST began
    ],
)
def test_outside_quiet_hours_nothing_waits(zone: str, moment: datetime) -> None:
    assert quiet_end(moment, NIGHT, ZoneInfo(zone)) is None


def test_a_daytime_window_does_not_span_midnight() -> None:
    lunch = QuietHours(time(12), time(14))
    assert quiet_end(utc(2026, 11, 23, 13), lunch, ZoneInfo("UTC")) == utc(2026, 11, 23, 14)
    assert quiet_end(utc(2026, 11, 23, 23), lunch, ZoneInfo("UTC")) is None


def write(tmp_path: Path, guardrails: str) -> Path:
    text = (Path(__file__).parents[2] / "triggermail" / "journeys.toml").read_text()
    head, _, rest = text.partition("[guardrails]")
    tail = rest[rest.index("# Cart left behind") :]
    path = tmp_path / "journeys.toml"
    path.write_text(f"{head}{guardrails}\n\n{tail}")
    return path


def test_the_packaged_defaults_are_the_issue_defaults() -> None:
    guardrails = load_journeys().guardrails
    assert (guardrails.min_hours_between, guardrails.max_per_week) == (16, 4)
    assert guardrails.quiet_hours == NIGHT
    assert guardrails.max_deferral == timedelta(days=3)
    assert guardrails.priority_of("abandoned_cart") == 10
    assert guardrails.priority_of("welcome") == 5  # below the cart: its follow-ups can wait
    assert guardrails.priority_of("birthday") == 9  # its day does not come back
    assert Guardrails().priority_of("birthday") == 0  # unlisted


def test_each_guardrail_switches_off(tmp_path: Path) -> None:
    off = '[guardrails]\nmin_hours_between = 0\nmax_per_week = 0\nquiet_hours = ""'
    guardrails = load_journeys(write(tmp_path, off)).guardrails
    assert (guardrails.min_hours_between, guardrails.max_per_week) == (0, 0)
    assert guardrails.quiet_hours is None


@pytest.mark.parametrize(
    ("guardrails", "error"),
    [
        ('[guardrails]\nquiet_hours = "9pm-9am"', "[guardrails.quiet_hours]: '9pm-9am' is not"),
        ("[guardrails]\nmax_per_week = -1", "[guardrails.max_per_week]"),
        ('[guardrails]\nexempt = ["newsletter"]', "'newsletter' is not a journey"),
        ("[guardrails]\nmax_emails = 3", "[guardrails.max_emails]: Extra inputs"),
        ("[guardrails.priority]\nabandoned_carts = 1", "'abandoned_carts' is not a journey"),
    ],
)
def test_mistakes_name_the_field(tmp_path: Path, guardrails: str, error: str) -> None:
    with pytest.raises(JourneysConfigError) as caught:
        load_journeys(write(tmp_path, guardrails))
    assert error in str(caught.value)


LINKS = UnsubscribeLinks(secret=b"s3cret", public_url="https://mail.shop.example/")


def test_a_token_names_its_send_and_nothing_else() -> None:
    send_id = "0123456789abcdef0123456789abcdef"
    token = LINKS.token(send_id)
    assert LINKS.verify(token) == send_id
    assert LINKS.url(send_id) == f"https://mail.shop.example/unsubscribe/{token}"
    assert "@" not in token


def test_forged_altered_cut_and_borrowed_tokens_are_refused() -> None:
    mine, theirs = "a" * 32, "b" * 32
    token = LINKS.token(mine)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    borrowed = f"{theirs}.{token.partition('.')[2]}"  # my signature on someone else's id
    other_secret = UnsubscribeLinks(secret=b"guess", public_url="https://x").token(mine)
    for bad in (flipped, token[:-5], token.partition(".")[0], borrowed, other_secret, ""):
        assert LINKS.verify(bad) is None, bad
