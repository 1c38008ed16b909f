from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI
from opentelemetry import trace

from apitier.query import SimulatedQuery
from apitier.routes import router
from apitier.settings import Settings
from tierkit.app import new_app
from tierkit.metrics import TierMetrics
from tierkit.server_timing import server_timing_header
from tierkit.telemetry import setup_telemetry


class State(TypedDict):
    tracer: trace.Tracer
    query: SimulatedQuery


def create_app(settings: Settings) -> FastAPI:
    metrics = TierMetrics() if settings.server.metrics else None
    telemetry = setup_telemetry(settings.telemetry, metrics.spans if metrics else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        tracer = telemetry.tracer("apitier")
        yield {"tracer": tracer, "query": SimulatedQuery(settings.query_delay_ms, tracer)}

    return new_app(
        router,
        lifespan,
        telemetry,
        metrics,
        server_timing=_server_timing,
        flush_timeout_s=settings.server.shutdown_grace_s,
    )


def _server_timing(state: MutableMapping[str, Any], total_ms: float) -> str:
    # The web tier subtracts this from its CLIENT time to get the network's share.
    return server_timing_header([("app", total_ms)])
