from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from fastapi import FastAPI

from tierkit.app import new_app
from tierkit.server_timing import server_timing_header
from tierkit.telemetry import setup_telemetry
from webtier.api_client import ApiClient, ApiReply
from webtier.pages import Pages
from webtier.routes import router
from webtier.settings import Settings


class State(TypedDict):
    api: ApiClient
    pages: Pages


def create_app(settings: Settings) -> FastAPI:
    telemetry = setup_telemetry(settings.telemetry)
    pages = Pages(settings.jaeger_ui_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        api = ApiClient(settings.api, telemetry)
        try:
            yield {"api": api, "pages": pages}
        finally:
            await api.aclose()

    return new_app(
        router,
        lifespan,
        telemetry,
        server_timing=server_timing,
        flush_timeout_s=settings.server.shutdown_grace_s,
    )


def server_timing(state: MutableMapping[str, Any], total_ms: float) -> str:
    """`web` + `net` + `api` = the web tier's server time. `net` is what no span explains:
    the exchange as the web tier's client saw it minus the API's own server time."""
    reply: ApiReply | None = state.get("reply")
    if reply is None:
        return server_timing_header([("web", total_ms)])
    if reply.api_ms is None:  # an API that does not report its time: net and api not separable
        return server_timing_header(
            [("web", total_ms - reply.exchange_ms), ("api", reply.exchange_ms)]
        )
    net_ms = max(reply.exchange_ms - reply.api_ms, 0.0)
    return server_timing_header(
        [("web", total_ms - reply.exchange_ms), ("net", net_ms), ("api", reply.api_ms)]
    )
