"""The FastAPI application both tiers are built on."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from tierkit.metrics import CONTENT_TYPE, TierMetrics
from tierkit.middleware import RequestTelemetryMiddleware, ServerTiming
from tierkit.telemetry import Telemetry

log = logging.getLogger("tierkit.app")

StateT = TypeVar("StateT", bound=Mapping[str, Any])


def new_app(
    router: APIRouter,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[StateT]],
    telemetry: Telemetry,
    metrics: TierMetrics | None,
    *,
    server_timing: ServerTiming,
    flush_timeout_s: float,
) -> FastAPI:
    """An app whose lifespan reports the telemetry set-up at start and flushes spans at exit,
    around the tier's own `lifespan` (which opens and closes the tier's shared resources), and
    which serves `metrics` (if any) at GET /metrics."""

    @asynccontextmanager
    async def lifespan_with_telemetry(app: FastAPI) -> AsyncIterator[StateT]:
        log.info("telemetry", extra=telemetry.summary())
        try:
            async with lifespan(app) as state:
                yield state
        finally:
            telemetry.shutdown(timeout_s=flush_timeout_s)

    app = FastAPI(
        lifespan=lifespan_with_telemetry,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's native OpenTelemetry would add a SERVER span and operation spans of its
        # own; the one SERVER span is made by `telemetry.instrument_app` below: contrib's
        # FastAPI instrumentation (TRACING_MODE=standard, the default) or tierkit/lean/spans.py
        # (TRACING_MODE=lean).
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.include_router(router)
    if metrics is not None:
        app.add_api_route("/metrics", _metrics_endpoint(metrics), methods=["GET"])
    app.add_middleware(
        RequestTelemetryMiddleware,
        server_timing=server_timing,
        observe=metrics.observe_request if metrics is not None else _unobserved,
    )
    telemetry.instrument_app(app)
    return app


def _unobserved(method: str, route: str, status: int, seconds: float, scheme: str) -> None:
    pass


def _metrics_endpoint(metrics: TierMetrics) -> Callable[[], Awaitable[Response]]:
    # On the event loop: writing a few hundred series takes well under a millisecond, less
    # than a hop to the thread pool would cost.
    async def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return scrape
