"""The anchor of `make bench`: the two tiers as a user would first write them from the
OpenTelemetry docs, with every library's documented defaults and nothing tuned.

FastAPI + uvicorn, `FastAPIInstrumentor.instrument_app(app)` (receive/send spans included),
httpx's `AsyncClient` with its default transport instrumented by
`HTTPXClientInstrumentor.instrument_client`, the SDK's `BatchSpanProcessor` and OTLP/HTTP
exporter configured by OTEL_* alone, old or new HTTP semantic conventions as the environment
says, and FastAPI 0.16x's own native OpenTelemetry left on, as its defaults have it (it adds
spans and metrics of its own beside contrib's: what a user who follows both docs gets). The
same work as the tiers: `GET /` on the API runs `api-handler` > `fast-query` (an
awaited QUERY_DELAY_MS) and answers the greeting; the web tier calls it and renders it with
Jinja2. Run as `python -m bench.stock.api` / `python -m bench.stock.web` (HOST, PORT, API_URL,
QUERY_DELAY_MS); `GET /healthz` for the bench's start check. Never imports netgap or tierkit.
"""

import os

import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def provider(service: str) -> TracerProvider:
    made = TracerProvider(resource=Resource.create({"service.name": service}))
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(made)
    return made


def instrumented(app: FastAPI) -> FastAPI:
    FastAPIInstrumentor.instrument_app(app)
    return app


def serve(app: FastAPI) -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ["PORT"]),
        log_level="warning",
    )
