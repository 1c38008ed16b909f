import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI

from tierkit.app import new_app
from tierkit.metrics import OutboundMetrics, TierMetrics
from tierkit.server_timing import server_timing_header
from tierkit.telemetry import setup_telemetry
from webtier.api_client import ApiClient, ApiReply, target
from webtier.pages import Pages
from webtier.routes import router
from webtier.settings import Settings

log = logging.getLogger("webtier")


class State(TypedDict):
    api: ApiClient
    pages: Pages


def create_app(settings: Settings) -> FastAPI:
    warning = settings.api.keepalive_warning()
    if warning is not None:
        log.warning(warning)
    metrics = TierMetrics() if settings.server.metrics else None
    telemetry = setup_telemetry(settings.telemetry, metrics.spans if metrics else None)
    pages = Pages(settings.jaeger_ui_url)
    edge = f"{telemetry.service}->{settings.api.service}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        address, port = target(settings.api.url)
        outbound = (
            OutboundMetrics(metrics.registry, edge, address=address, port=port) if metrics else None
        )
        api = ApiClient(settings.api, telemetry, outbound, tcp_info=settings.server.tcp_info)
        try:
            yield {"api": api, "pages": pages}
        finally:
            await api.aclose()

    return new_app(
        router,
        lifespan,
        telemetry,
        metrics,
        server_timing=server_timing,
        flush_timeout_s=settings.server.shutdown_grace_s,
    )


def server_timing(state: MutableMapping[str, Any], total_ms: float) -> str:
    """`web` + `net` + `api` = the web tier's server time. `net` is what no span explains:
    the call as the web tier's CLIENT span spans it minus the API's own server time."""
    reply: ApiReply | None = state.get("reply")
    if reply is None:
        return server_timing_header([("web", total_ms)])
    exchange = reply.exchange
    call_ms = exchange.seconds * 1e3
    remote_s = exchange.remote_s
    if exchange.api_s is None or remote_s is None:  # net and api not separable
        return server_timing_header([("web", total_ms - call_ms), ("api", call_ms)])
    return server_timing_header(
        [("web", total_ms - call_ms), ("net", remote_s * 1e3), ("api", exchange.api_s * 1e3)]
    )
