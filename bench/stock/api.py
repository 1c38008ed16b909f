"""The stock API tier (bench/stock/__init__.py says what "stock" means)."""

import asyncio
import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from bench.stock import instrumented, provider, serve

tracer = provider("apitier").get_tracer("apitier")
delay_s = float(os.environ.get("QUERY_DELAY_MS", "2")) / 1000
app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    with tracer.start_as_current_span("api-handler"), tracer.start_as_current_span("fast-query"):
        await asyncio.sleep(delay_s)
    return "Hello, from the API tier!"


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok"


if __name__ == "__main__":
    serve(instrumented(app))
