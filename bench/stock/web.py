"""The stock web tier (bench/stock/__init__.py says what "stock" means)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from jinja2 import Environment
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from bench.stock import instrumented, provider, serve

provider("webtier")
API_URL = os.environ.get("API_URL", "http://127.0.0.1:8801/")
PAGE = Environment(autoescape=True).from_string(
    "<!doctype html><title>netgap</title><p>The API tier says: <strong>{{ body }}</strong>"
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with httpx.AsyncClient() as client:
        HTTPXClientInstrumentor.instrument_client(client)
        yield {"client": client}


app = FastAPI(lifespan=lifespan)


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> str:
    response = await request.state.client.get(API_URL)
    return PAGE.render(body=response.text)


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok"


if __name__ == "__main__":
    serve(instrumented(app))
