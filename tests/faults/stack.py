"""triggermail as production runs it, in processes a test can kill: Temporal's dev server on a
database file, worker and API processes, a private PostgreSQL cluster, and the fake SendGrid.

The benchmarks use the same pieces (``bench/*.py`` import this module).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import sqlalchemy as sa
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.fakes.sendgrid import FakeSendGrid
from tests.seed import free_port
from triggermail.ids import abandoned_cart_id
from triggermail.migrate import upgrade
from triggermail.store import EmailSend, make_engine
from triggermail.temporal import binary, register_search_attributes

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-tests-secret"
WRITE_KEY = "faults"
SHOP = """
[shop]
name = "Fault Shop"
url = "https://shop.example"
from_email = "hello@shop.example"
help_email = "help@shop.example"
currency = "EUR"
locale = "en"
postal_address = "Fault Shop Ltd, 1 Example Street, London EC1A 1AA, United Kingdom"
preferences_url = "https://shop.example/account/emails"

[guardrails]
min_hours_between = 0
max_per_week = 0
quiet_hours = ""

"""


def journeys_toml(
    path: Path, *, reminder: str, incentive: str | None, welcome: list[str] | None = None
) -> Path:
    """A journeys TOML with the abandoned cart at second-scale timings (no incentive: one
    e-mail), and the welcome's three steps at ``welcome`` timings when given."""
    text = (
        SHOP
        + f"""
[abandoned_cart]
enabled = true

[[abandoned_cart.steps]]
name = "reminder"
after = "{reminder}"
template = "abandoned_cart/reminder"
"""
    )
    if incentive is not None:
        text += f"""
[[abandoned_cart.steps]]
name = "incentive"
after = "{incentive}"
template = "abandoned_cart/incentive"
coupon_percent = 10
coupon_valid = "48h"
"""
    if welcome:
        text += "\n[welcome]\nenabled = true\n"
        for name, after in zip(("welcome", "discover", "account"), welcome, strict=True):
            text += f"""
[[welcome.steps]]
name = "{name}"
after = "{after}"
template = "welcome/{name}"
"""
    path.write_text(text)
    return path


class Process:
    """A child process with its output in a log file, stopped by its own pid only."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _spawn(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} running"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._log:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the server; what a crashed host looks like."""
        self.stop(signal.SIGKILL)


class DevServer(Process):
    """``temporal server start-dev`` on a database file, so a restart keeps every journey
    (in memory without one: faster, for benchmarks that restart nothing)."""

    def __init__(self, log_dir: Path, db_file: Path | None) -> None:
        super().__init__("temporal", log_dir)
        self.db_file = db_file
        self.port = free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Client:
        """Start (or restart on the same file and port); the client once it answers."""
        args = [binary("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        args += ["--port", str(self.port)]
        if self.db_file is not None:
            args += ["--db-filename", str(self.db_file)]
        self._spawn([*args, "--log-level", "error"])
        deadline = time.monotonic() + 60
        while True:
            try:
                # connect() asks the server for its system info: it answers once it serves.
                return await Client.connect(self.address)
            except Exception:
                if time.monotonic() > deadline or (self.process and self.process.poll()):
                    raise RuntimeError(
                        f"dev server did not start:\n{self.log_text()[-2000:]}"
                    ) from None
                await asyncio.sleep(0.2)


@dataclass
class Settings:
    """The environment every triggermail process of a stack gets."""

    temporal: str
    database_url: str
    journeys: Path
    sendgrid_url: str
    task_queue: str = "triggermail"
    sendgrid_timeout_s: float = 2.0
    sends_per_second: float = 50.0
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TRIGGERMAIL_", "TEMPORAL_"))
        }
        env.update(
            TEMPORAL_ADDRESS=self.temporal,
            TEMPORAL_NAMESPACE="default",
            TRIGGERMAIL_DATABASE_URL=self.database_url,
            TRIGGERMAIL_JOURNEYS=str(self.journeys),
            TRIGGERMAIL_MAIL_TRANSPORT="sendgrid",
            TRIGGERMAIL_SENDGRID_HOST=self.sendgrid_url,
            TRIGGERMAIL_SENDGRID_TIMEOUT_S=str(self.sendgrid_timeout_s),
            SENDGRID_API_KEY="SG.fault-tests",
            TRIGGERMAIL_SECRET=SECRET,
            TRIGGERMAIL_WRITE_KEY=WRITE_KEY,
            TRIGGERMAIL_TASK_QUEUE=self.task_queue,
            TRIGGERMAIL_SENDS_PER_SECOND=str(self.sends_per_second),
            TRIGGERMAIL_METRICS_ADDRESS="",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra)
        return env


class WorkerProcess(Process):
    """``python worker.py``: the production worker, configured by its environment only."""

    def __init__(self, log_dir: Path, settings: Settings, name: str = "worker") -> None:
        super().__init__(name, log_dir)
        self.settings = settings

    async def start(self) -> None:
        """Start and return once it polls (its log says so)."""
        seen = len(self.log_text())
        self._spawn([sys.executable, str(ROOT / "worker.py")], env=self.settings.env())
        deadline = time.monotonic() + 90
        while "worker polling task queues" not in self.log_text()[seen:]:
            if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                raise RuntimeError(f"{self.name} did not start:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.1)

    def stop(self, sig: signal.Signals = signal.SIGINT, *, timeout: float = 30) -> None:
        # SIGINT is Ctrl-C: the worker finishes what it holds, as on a deploy.
        super().stop(sig, timeout=timeout)


class ApiProcess(Process):
    """``triggermail api``: the HTTP intake a shop's Segment SDK posts to."""

    def __init__(self, log_dir: Path, settings: Settings) -> None:
        super().__init__("api", log_dir)
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # `triggermail api`, from this checkout (the console script would import the installed one).
        command = [sys.executable, "-c", "from triggermail.ops.cli import app; app()"]
        self._spawn([*command, "api", "--port", str(self.port)], env=self.settings.env())
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/openapi.json")).status_code == 200:
                        return
                if time.monotonic() > deadline or (self.process and self.process.poll()):
                    raise RuntimeError(f"API did not start:\n{self.log_text()[-3000:]}")
                await asyncio.sleep(0.2)


def cart_events(run: str, first: int, count: int) -> list[dict[str, Any]]:
    """Each customer: an identify with address and consent, then a cart left behind now."""
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = []
    for i in range(first, first + count):
        customer = f"{run}-c{i}"
        events.append(
            {
                "type": "identify",
                "userId": customer,
                "messageId": f"{customer}-id",
                "timestamp": now,
                "traits": {
                    "email": f"{customer}@example.com",
                    "firstName": "Ana",
                    "marketing_consent": True,
                },
            }
        )
        events.append(
            {
                "type": "track",
                "event": "Product Added",
                "userId": customer,
                "messageId": f"{customer}-cart",
                "timestamp": now,
                "properties": {
                    "product_id": "tee-1",
                    "name": "Organic cotton T-shirt",
                    "price": 24.9,
                    "cart_id": f"{customer}-k",
                },
            }
        )
    return events


async def post_batch(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> int:
    """Post once; the HTTP status (503 while the store is down)."""
    response = await http.post("/v1/batch", json={"batch": events}, auth=(WRITE_KEY, ""))
    return response.status_code


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temp folder on a free port, ours to stop and start.

    The machine's shared server on :5432 is never touched: other suites use it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.bin = self._bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="triggermail-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _bindir() -> Path | None:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).parent
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
        return Path(versions[-1]).parent if versions else None

    def _tool(self, name: str) -> str:
        assert self.bin is not None, "no PostgreSQL binaries"
        return str(self.bin / name)

    def _run(self, *args: str) -> None:
        # initdb and the server refuse to run as root: as root, run them as `postgres`.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def unavailable(self) -> str | None:
        """Why a private cluster cannot run here, or None."""
        if self.bin is None:
            return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as `postgres`"
        try:
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres", "postgres")
            self._run(self._tool("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        except (subprocess.SubprocessError, OSError, LookupError) as err:
            detail = getattr(err, "stderr", b"") or b""
            return f"initdb failed: {err} {detail.decode(errors='replace')[-300:]}"
        return None

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(
            self._tool("pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.folder / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash: connections cut, recovery from the WAL at the next start."""
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("fast")
        shutil.rmtree(self.folder, ignore_errors=True)


def _version(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


async def wait_closed(client: Client, workflow_ids: Iterable[str], *, timeout: float) -> None:
    """Until every journey has closed (they end after their last e-mail)."""
    deadline = time.monotonic() + timeout
    pending = set(workflow_ids)
    missing: set[str] = set()
    while pending:
        for workflow_id in sorted(pending):
            try:
                description = await client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    missing.add(workflow_id)
                continue  # or the server is restarting
            missing.discard(workflow_id)
            if description.close_time is not None:
                pending.discard(workflow_id)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(pending)} journeys still open, e.g. {sorted(pending)[:3]}; "
                f"{len(missing)} never started"
            )
        await asyncio.sleep(0.5)


@dataclass
class Tally:
    """One fault's count, from the fake SendGrid's log and the ledger."""

    fault: str
    trials: int = 0
    expected: int = 0
    sent: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0
    unknown_delivered: int = 0
    requests: int = 0
    injected: int = 0
    note: str = ""

    def add(self, other: Tally) -> None:
        for name in ("expected", "sent", "duplicates", "lost", "unknown", "unknown_delivered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.requests += other.requests
        self.injected += other.injected
        self.trials += 1
        self.note = "; ".join(n for n in (self.note, other.note) if n)


def tally(
    fault: str,
    *,
    database_url: str,
    customers: Iterable[str],
    steps: int,
    sendgrid: FakeSendGrid,
    injected: int = 0,
) -> Tally:
    """Count what the customers got against what they should have got.

    ``sent``: distinct e-mails SendGrid took. ``duplicates``: extra copies of one e-mail.
    ``unknown``: ledger rows left ``unknown`` (a request left and no answer came; not
    resent, by the product's at-most-once rule), of which ``unknown_delivered`` reached the
    fake. ``lost``: due e-mails neither delivered nor recorded as ``unknown`` — silently gone.
    """
    customers = set(customers)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(EmailSend.id, EmailSend.status, EmailSend.customer_id)).all()
    engine.dispose()
    rows = [row for row in rows if row.customer_id in customers]
    ids = {row.id for row in rows}
    with sendgrid.lock:
        log = [entry for entry in sendgrid.log if entry.send_id in ids]
    copies = Counter(entry.send_id for entry in log if entry.taken)
    unknown = {row.id for row in rows if row.status == "unknown"}
    ledger_sent = {row.id for row in rows if row.status == "sent"}
    expected = len(customers) * steps
    result = Tally(
        fault,
        trials=1,
        expected=expected,
        sent=len(copies),
        duplicates=sum(n - 1 for n in copies.values()),
        unknown=len(unknown),
        unknown_delivered=len(unknown & set(copies)),
        requests=len(log),
        injected=injected,
    )
    result.lost = expected - result.sent - (result.unknown - result.unknown_delivered)
    # The ledger must agree with the provider: "sent" means SendGrid answered 202.
    missing = ledger_sent - set(copies)
    assert not missing, f"{fault}: ledger says sent, SendGrid never took {sorted(missing)[:3]}"
    open_rows = [row for row in rows if row.status not in ("sent", "unknown")]
    assert not open_rows, f"{fault}: rows not settled: {[(r.id, r.status) for r in open_rows]}"
    return result


class Stack:
    """Dev server on a db file, fake SendGrid, migrated store, a worker process, the API.

    Args:
        folder: where the db files, journeys TOML and process logs go.
        database_url: the store; a SQLite file in ``folder`` unless given.
        workers: how many worker processes (more than one shares the load).
        reminder, incentive: the abandoned cart's timings.
    """

    def __init__(
        self,
        folder: Path,
        *,
        database_url: str | None = None,
        workers: int = 1,
        reminder: str = "2s",
        incentive: str | None = "2s",
        welcome: list[str] | None = None,
        sendgrid_timeout_s: float = 2.0,
        sends_per_second: float = 50.0,
        temporal_in_memory: bool = False,
    ) -> None:
        self.folder = folder
        self.steps = 1 if incentive is None else 2
        self.database_url = database_url or f"sqlite:///{folder / 'store.db'}"
        self.sendgrid = FakeSendGrid()
        self.server = DevServer(folder, None if temporal_in_memory else folder / "temporal.db")
        self.settings = Settings(
            temporal=self.server.address,
            database_url=self.database_url,
            journeys=journeys_toml(
                folder / "journeys.toml", reminder=reminder, incentive=incentive, welcome=welcome
            ),
            sendgrid_url=self.sendgrid.url,
            sendgrid_timeout_s=sendgrid_timeout_s,
            sends_per_second=sends_per_second,
        )
        names = ["worker"] if workers == 1 else [f"worker-{n + 1}" for n in range(workers)]
        self.workers = [WorkerProcess(folder, self.settings, name) for name in names]
        self.api = ApiProcess(folder, self.settings)
        self._client: Client | None = None
        self.http = httpx.AsyncClient(base_url=self.api.url, timeout=30)

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    async def __aenter__(self) -> Stack:
        self.sendgrid.__enter__()
        try:
            await asyncio.to_thread(upgrade, self.database_url)
            await self.start_server()
            await register_search_attributes(self.client)
            await asyncio.gather(*(worker.start() for worker in self.workers), self.api.start())
        except BaseException:
            # No process may outlive a stack that failed to start.
            await self.__aexit__()
            raise
        return self

    async def start_server(self) -> None:
        self._client = await self.server.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.api.stop()
        for worker in self.workers:
            worker.stop()
        self.server.stop()
        self.sendgrid.__exit__()

    async def enter(self, run: str, count: int, *, first: int = 0) -> list[str]:
        """Customers leave carts behind through the HTTP intake; retried on 503 as SDKs do."""
        events = cart_events(run, first, count)
        while (status := await post_batch(self.http, events)) != 200:
            assert status == 503, status
            await asyncio.sleep(0.5)
        return [f"{run}-c{i}" for i in range(first, first + count)]

    async def finish(self, customers: Iterable[str], *, timeout: float = 240) -> None:
        await wait_closed(self.client, [abandoned_cart_id(c) for c in customers], timeout=timeout)

    def tally(self, fault: str, customers: Iterable[str], *, injected: int = 0) -> Tally:
        return tally(
            fault,
            database_url=self.database_url,
            customers=customers,
            steps=self.steps,
            sendgrid=self.sendgrid,
            injected=injected,
        )


async def until(condition: Callable[[], bool], *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)
