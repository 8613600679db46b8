"""A session on a fresh store (SQLite and PostgreSQL) and the packaged journeys config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from tests.report.builders import Store
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import make_engine, make_session_factory


@pytest.fixture
def session(store_url: str) -> Iterator[Session]:
    engine = make_engine(store_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def store(session: Session) -> Store:
    return Store(session)


@pytest.fixture
def config() -> JourneysConfig:
    return load_journeys()
