"""Running ``triggermail`` commands against the dev server a test module started."""

from __future__ import annotations

import asyncio

from temporalio.client import ScheduleHandle
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from triggermail.ops.cli import app


def cli(dev_env: WorkflowEnvironment, args: list[str], **env: str) -> Result:
    """The command as an operator runs it, against the dev server (from a thread: it runs
    its own event loop)."""
    config = dev_env.client.config()
    target = config["service_client"].config.target_host
    return CliRunner().invoke(
        app, args, env={"TEMPORAL_ADDRESS": target, "TEMPORAL_NAMESPACE": "default", **env}
    )


async def pause_in_effect(handle: ScheduleHandle, *, note: str) -> None:
    """Pause a Schedule as an operator does, and wait until the cluster shows it paused.

    A pause is a signal to the Schedule's own workflow: a ``describe`` (and so an update
    built on one) right after it may still see it running, and the update would then
    write the pause away. An operator's pause is in effect before anyone applies again.
    """
    await handle.pause(note=note)
    deadline = asyncio.get_running_loop().time() + 30  # a loaded machine: seconds, not ms
    while asyncio.get_running_loop().time() < deadline:
        if (await handle.describe()).schedule.state.paused:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"schedule {handle.id} still not paused")
