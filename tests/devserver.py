"""Running ``triggermail`` commands against the dev server a test module started."""

from __future__ import annotations

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
