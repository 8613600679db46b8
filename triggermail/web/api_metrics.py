"""The HTTP API's Prometheus metrics at ``/metrics``: what the intake took, refused, deferred.

Journey and e-mail counters come from the workers (``TRIGGERMAIL_METRICS_ADDRESS``); these
are the door's. Each app has its own registry, so several apps in one process (tests,
``triggermail dev``) do not collide.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "triggermail_events",
            "Events through the HTTP intake, by call type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.unavailable = Counter(
            "triggermail_intake_unavailable",
            "Requests answered 503 because the store or Temporal was unreachable",
            registry=self.registry,
        )
        self.requests = Counter(
            "triggermail_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )

    def router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get(
            "/metrics",
            summary="Prometheus metrics of this API process",
            response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus text exposition format."}},
        )
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return router

    def middleware(self) -> type[BaseHTTPMiddleware]:
        requests = self.requests

        class CountRequests(BaseHTTPMiddleware):
            async def dispatch(
                self, request: Request, call_next: RequestResponseEndpoint
            ) -> Response:
                response = await call_next(request)
                # The route's template, not the path: customer ids must not become labels.
                route = request.scope.get("route")
                name = getattr(route, "path", "unmatched")
                requests.labels(name, str(response.status_code)).inc()
                return response

        return CountRequests
