"""Run by test_conformance in a fresh process (contrib reads OTEL_SEMCONV_STABILITY_OPT_IN
once per process): the same requests through a FastAPI app and an httpx client on a real socket,
once traced by opentelemetry-instrumentation-fastapi/-httpx and once by tierkit.lean.spans; prints
the spans of each as JSON lines `{"stack": ..., "spans": [...]}`."""

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tierkit.lean.spans import ServerSpanMiddleware, TracedTransport

REQUESTS = ("/items/7?q=1", "/fail", "/nowhere")
USER_AGENT = "conformance/1.0"


def new_app() -> FastAPI:
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=503, detail="down")

    return app


def contrib(app: FastAPI, provider: TracerProvider) -> Callable[[], httpx.AsyncBaseTransport]:
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return lambda: AsyncOpenTelemetryTransport(httpx.AsyncHTTPTransport(), tracer_provider=provider)


def ours(app: FastAPI, provider: TracerProvider) -> Callable[[], httpx.AsyncBaseTransport]:
    tracer = provider.get_tracer("tierkit.lean")
    app.add_middleware(ServerSpanMiddleware, tracer=tracer, excluded_paths=())
    return lambda: TracedTransport(httpx.AsyncHTTPTransport(), tracer, {}, lambda span, ext: None)


async def exchange(app: FastAPI, transport: httpx.AsyncBaseTransport) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):  # bounded: 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("uvicorn did not start in 5 s")
    headers = {"user-agent": USER_AGENT}
    async with httpx.AsyncClient(transport=transport, headers=headers) as client:
        for path in REQUESTS:
            await client.get(f"http://127.0.0.1:{port}{path}")
    server.should_exit = True
    await serving


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    assert span.parent is None or span.parent.span_id
    return {
        "name": span.name,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "has_parent": span.parent is not None,
    }


def main() -> None:
    for stack, instrument in (("contrib", contrib), ("ours", ours)):
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        app = new_app()
        transport = instrument(app, provider)
        asyncio.run(exchange(app, transport()))
        # contrib's internal http.send/receive spans are not part of the HTTP conventions
        spans = [as_dict(s) for s in memory.get_finished_spans() if s.kind.name != "INTERNAL"]
        print(json.dumps({"stack": stack, "spans": spans}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
