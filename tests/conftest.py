"""Shared fixtures: one time-skipping Temporal server per session, a dev server per module
that needs Schedules or visibility, a fresh store per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from tests.fakes.sendgrid import FakeSendGrid
from triggermail.migrate import upgrade
from triggermail.search_attributes import ALL
from triggermail.temporal import binary, register_search_attributes

# The time-skipping server does not advertise heartbeat-on-failure, so the SDK's core warns
# once per worker: hundreds of lines that bury pytest's summary. Errors still show;
# TRIGGERMAIL_TEST_CORE_LOG=WARN (or INFO, DEBUG) brings the rest back.
Runtime.set_default(
    Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(
                    core_level=os.environ.get("TRIGGERMAIL_TEST_CORE_LOG", "ERROR"),
                    other_level="ERROR",
                )
            )
        )
    )
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dev_server: runs on a Temporal dev server of its own (real time)"
    )


@pytest.fixture(autouse=True)
def _clock_shift(request: pytest.FixtureRequest) -> Iterator[None]:
    """``TRIGGERMAIL_TEST_CLOCK_SHIFT_DAYS=N`` (``make test-clock``) runs each test with this
    process's wall clock N days ahead: a test whose outcome depends on the day it runs,
    rather than on the clock it hands the code, fails there, and so does product code that
    reads the machine's clock where the caller's should count.

    The time-skipping server keeps the real date, so code that mixes the machine's clock
    with a workflow's shows up too. Tests on the dev server (``dev_env``, or marked
    ``dev_server``) run unshifted: it is a static Go binary whose clock nothing here can
    move, and they pass real time through it.
    """
    days = os.environ.get("TRIGGERMAIL_TEST_CLOCK_SHIFT_DAYS")
    real_time = "dev_env" in request.fixturenames or request.node.get_closest_marker("dev_server")
    if not days or real_time:
        yield
        return
    import time_machine

    with time_machine.travel(datetime.now(UTC) + timedelta(days=int(days)), tick=True):
        yield


PG_ADMIN_URL = os.environ.get(
    "TRIGGERMAIL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    ) as env:
        await register_search_attributes(env.client)
        yield env


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server, for what the time-skipping one lacks: Schedules, search attributes
    in visibility. One per module, so a module's Schedules and journeys are its own."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=ALL,
        dev_server_log_level="error",
    ) as env:
        yield env


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    """SendGrid's API, faked on loopback: the one side effect tests replace."""
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("schema") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    target = tmp_path / "store.db"
    shutil.copyfile(migrated_sqlite, target)
    return f"sqlite:///{target}"


def _postgres_reason() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as err:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {err.__class__.__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: sa.Engine) -> Iterator[str]:
    """A brand-new database per test, migrated from empty, dropped afterwards."""
    name = f"triggermail_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The store on both backends we support."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))
