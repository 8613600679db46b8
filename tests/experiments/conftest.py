"""A store on both backends, seeded with an experiment ``later`` wins, and its config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.experiments.kit import config
from triggermail.journeys import JourneysConfig
from triggermail.store import make_engine, make_session_factory


@pytest.fixture
def journeys(tmp_path: Path) -> JourneysConfig:
    return config(tmp_path)


def factory(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def sessions(store_url: str) -> Iterator[sessionmaker[Session]]:
    yield from factory(store_url)


@pytest.fixture
def sqlite_sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    yield from factory(sqlite_url)
