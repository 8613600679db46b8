"""/openapi.json is what the API does: schemathesis fuzzes every route against it.

Bounded examples per route, valid and invalid bodies, against a real server on
loopback wired to the shop: no answer is a 5xx, and every answer has a documented
status, content type and body shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import SecretStr
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from tests.api.conftest import ADMIN_KEY, WRITE_KEY, app_for, basic, serving
from tests.guardrails.conftest import PUBLIC_KEY
from tests.harness import Shop
from triggermail.web.api import ApiStartError, serve

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(url: str) -> int:
    """Run every operation in both generation modes; returns how many requests were made."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    made: list[Case] = []
    for found in schema.get_all_operations():
        if isinstance(found, Err):
            raise found.err()
        operation = found.ok()
        key = ADMIN_KEY if operation.path.startswith("/v1/customers") else WRITE_KEY
        inputs = [operation.path_parameters, operation.query, operation.headers, operation.body]
        # An operation that takes nothing (GET /metrics) has no invalid request to make.
        modes = [GenerationMode.POSITIVE]
        if any(len(group) for group in inputs):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            examples(operation, mode, url, {"Authorization": basic(key)}, made)()
    return len(made)


def examples(
    operation: APIOperation,
    mode: GenerationMode,
    url: str,
    headers: dict[str, str],
    made: list[Case],
) -> Callable[[], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case) -> None:
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)
        made.append(case)

    return check


async def test_every_route_keeps_to_its_schema_and_never_answers_5xx(shop: Shop) -> None:
    async with serving(app_for(shop, webhook_key=PUBLIC_KEY)) as url:
        made = await asyncio.to_thread(fuzz, url)

    assert made >= 9 * EXAMPLES  # every route was exercised


async def test_openapi_documents_every_route_with_its_auth(shop: Shop) -> None:
    async with serving(app_for(shop, webhook_key=PUBLIC_KEY)) as url:
        loaded = await asyncio.to_thread(schemathesis.openapi.from_url, f"{url}/openapi.json")
        schema = loaded.raw_schema

    routes = {
        (method.upper(), path): spec.get("security")
        for path, methods in schema["paths"].items()
        for method, spec in methods.items()
    }
    ingest = [("POST", f"/v1/{name}") for name in ("batch", "track", "identify", "page")]
    ingest += [("POST", f"/v1/{name}") for name in ("screen", "group", "alias")]
    assert routes == {
        **{route: [{"HTTPBasic": []}] for route in ingest},
        ("GET", "/v1/customers/{customer_id}"): [{"AdminBasic": []}, {"AdminBearer": []}],
        # The signed token in the path is the authorisation.
        ("GET", "/unsubscribe/{token}"): None,
        ("POST", "/unsubscribe/{token}"): None,
        ("GET", "/survey/{token}/{answer}"): None,
        # Operations data for Prometheus, like the worker's own port.
        ("GET", "/metrics"): None,
        # SendGrid's signature over the body is the authorisation.
        ("POST", "/webhooks/sendgrid"): None,
    }
    batch = schema["paths"]["/v1/batch"]["post"]
    assert set(batch["responses"]) == {"200", "400", "401", "413", "503"}
    assert batch["requestBody"]["content"]["application/json"]["schema"]["required"] == ["batch"]


async def test_serve_reports_a_port_it_cannot_take(shop: Shop) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ApiStartError, match=f"127.0.0.1:{port}"):
            await serve(shop.settings, port=port, client=shop.env.client)
    finally:
        taken.close()


async def test_serve_runs_the_api_in_the_callers_loop(shop: Shop) -> None:
    """How ``triggermail dev`` runs it: a task beside the worker, on the caller's client."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings = shop.settings.model_copy(update={"write_key": SecretStr(WRITE_KEY)})
    task = asyncio.create_task(serve(settings, port=port, client=shop.env.client))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                with contextlib.suppress(httpx.ConnectError):
                    response = await http.post(
                        "/v1/identify", json={"userId": "c-1"}, auth=(WRITE_KEY, "")
                    )
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the API did not come up")
        assert response.status_code == 200
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
