"""``triggermail experiments``: the figures read-only, ``--decide`` as the Schedule does,
``--json`` for tools; the store and the journeys TOML from the environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from tests.experiments.kit import NAME, journeys_toml, later_wins
from triggermail.ops.cli import app
from triggermail.store import Experiment, make_engine, make_session_factory


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    with factory() as session:
        later_wins(session)
    yield factory
    engine.dispose()


def run(args: list[str], *, url: str, tmp_path: Path) -> Result:
    env = {
        "TRIGGERMAIL_DATABASE_URL": url,
        "TRIGGERMAIL_JOURNEYS": str(journeys_toml(tmp_path / "journeys.toml")),
        "COLUMNS": "160",
    }
    return CliRunner().invoke(app, ["experiments", *args], env=env)


def test_the_table_shows_each_variant_and_decides_nothing(
    sessions: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    result = run([], url=sqlite_url, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    assert f"{NAME} · abandoned_cart / reminder" in result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if "│" in line}
    assert "10.0% (" in lines["control"] and "40" in lines["control"]
    assert "50.0% (" in lines["later"]
    assert "no winner yet" in result.output
    with sessions() as session:
        assert session.get(Experiment, NAME) is None


def test_decide_records_the_winner_as_the_schedule_does(
    sessions: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    result = run(["--decide"], url=sqlite_url, tmp_path=tmp_path)
    again = run([], url=sqlite_url, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    assert "winner: later at" in result.output and "decided now" in result.output
    assert "later ★" in result.output
    with sessions() as session:
        record = session.get(Experiment, NAME)
    assert record is not None and record.winner == "later"
    assert again.exit_code == 0, again.output
    assert "winner: later at" in again.output and "decided now" not in again.output


def test_json_lists_every_experiment_with_its_variants(
    sessions: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    result = run(["--json", "--decide"], url=sqlite_url, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["decide"] is True
    [experiment] = document["experiments"]
    assert experiment["name"] == NAME
    assert (experiment["journey"], experiment["step"]) == ("abandoned_cart", "reminder")
    assert (experiment["winner"], experiment["decided_now"]) == ("later", True)
    assert experiment["decided_at"] == document["evaluated_at"]
    assert experiment["started_at"].startswith("2026-03-02T12:00:00")
    variants = {v["name"]: v for v in experiment["variants"]}
    assert set(variants) == {"control", "later"}
    control = variants["control"]
    assert (control["entered"], control["sent"], control["converted"]) == (40, 40, 4)
    assert control["rate"] == pytest.approx(0.1)
    low, high = control["ci"]
    assert low < 0.1 < high
    assert variants["later"]["probability_best"] > 0.99
    assert experiment["min_recipients"] == 10 and experiment["threshold"] == 0.9


def test_without_experiments_it_says_so(sqlite_url: str) -> None:
    result = CliRunner().invoke(app, ["experiments"], env={"TRIGGERMAIL_DATABASE_URL": sqlite_url})
    as_json = CliRunner().invoke(
        app, ["experiments", "--json"], env={"TRIGGERMAIL_DATABASE_URL": sqlite_url}
    )

    assert result.exit_code == 0, result.output
    assert "no experiments" in result.output
    assert json.loads(as_json.output)["experiments"] == []


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["experiments", "--help"], env={"COLUMNS": "160"})

    assert result.exit_code == 0
    assert "--decide" in result.output and "--json" in result.output
