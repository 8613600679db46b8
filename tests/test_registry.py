"""The journey registry is the one list of journeys: every part of triggermail that does
something per journey covers each journey it declares, and nothing else names one."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from activities.sweep_store import JOURNEY_OF, SWEPT_ID
from starter.starting import journey_ids
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import make_engine, make_session_factory
from worker import WORKFLOWS
from workflows import registry
from workflows.definition import JourneyDef
from workflows.sweep import KINDS

ROOT = Path(__file__).parents[1]


@pytest.fixture
def sessions(sqlite_url: str) -> sessionmaker[Session]:
    return make_session_factory(make_engine(sqlite_url))


def test_each_journey_is_declared_by_its_own_module() -> None:
    for journey in registry.JOURNEYS:
        assert journey.workflow.__module__ == f"workflows.{journey.name}"
        assert journey.workflow.__name__ == journey.workflow_type
        assert journey.title


def test_the_journeys_toml_has_a_table_for_each_journey_and_no_other() -> None:
    assert set(JourneysConfig.journey_names()) == set(registry.NAMES)
    packaged = tomllib.loads((ROOT / "triggermail" / "journeys.toml").read_text())
    assert set(registry.NAMES) <= set(packaged)


def test_the_worker_runs_each_journeys_workflow() -> None:
    for journey in registry.JOURNEYS:
        assert journey.workflow in WORKFLOWS


@pytest.mark.parametrize("journey", registry.JOURNEYS, ids=lambda j: j.name)
def test_each_journeys_ids_are_business_keys_of_their_kind(journey: JourneyDef) -> None:
    keys = {
        "customer": ("c1",),
        "order": ("o1",),
        "product": ("c1", "p1"),
        "lapse": ("c1", "2026-01-02"),
        "occasion": ("c1", 2026),
    }[journey.keyed_by]
    workflow_id = journey.workflow_id(*keys)
    assert all(str(key) in workflow_id for key in keys)
    assert workflow_id.split("/")[0] == journey.name.replace("_", "-")


def test_the_sweep_starts_exactly_the_journeys_that_enter_on_it() -> None:
    swept = {j.name for j in registry.JOURNEYS if "sweep" in j.enters_on}
    assert set(JOURNEY_OF.values()) == swept
    assert set(KINDS) == set(registry.SWEPT) == set(SWEPT_ID)


def test_an_unsubscribe_and_the_customer_card_find_every_journey_of_a_customer(
    sessions: sessionmaker[Session],
) -> None:
    ids = journey_ids(sessions, "c1", datetime(2026, 12, 4, tzinfo=UTC))
    assert set(ids) == set(registry.NAMES)
    for journey in registry.keyed_by("customer", "occasion"):
        assert ids[journey.name], journey.name


@pytest.mark.parametrize("journey", registry.NAMES)
def test_each_journeys_packaged_steps_render_with_the_sample_context(journey: str) -> None:
    from activities.rendering import Renderer
    from activities.samples import sample_context

    packaged = load_journeys()
    table = getattr(packaged, journey)
    assert table is not None and table.steps, f"the packaged TOML has no steps for {journey}"
    renderer = Renderer(shop_locale="en")
    for step in table.steps:
        context = sample_context(
            packaged, journey=journey, step=step.name, coupon_percent=step.coupon_percent
        )
        rendered = renderer.render(step.template, context, locale="en")
        assert rendered.subject and rendered.html, (journey, step.name)


def test_no_module_but_the_registry_lists_the_journeys() -> None:
    layers = ROOT.parent / "shared" / "tools" / "layers.py"
    if not layers.exists():
        pytest.skip(f"{layers} is not beside this checkout")
    result = subprocess.run(
        [sys.executable, str(layers), str(ROOT)], capture_output=True, text=True, check=False
    )
    assert "modules_listing_journeys=0" in result.stdout, result.stdout
    assert "package cycles=0 lazy_hooks=0" in result.stdout, result.stdout
