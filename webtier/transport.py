"""The transport under the web tier's API client.

opentelemetry-instrumentation-httpx wraps a client's transport and ends its CLIENT span when the
transport returns, which for httpx's own transport is when the response *headers* arrive
(opentelemetry-python-contrib #2304). Under a bandwidth cap the body transfer would then be
misfiled as web time. This transport returns only after the whole body is read, so the standard
CLIENT span covers the whole exchange, and it notes the connection phases on that span.
"""

import time
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import trace

# httpcore `trace` extension events -> the span event we record for each. A request without
# a body is on the wire once its headers are written; httpcore's (empty) body step after that
# yields to the event loop and would date "request sent" late.
_PHASES = {
    "connection.connect_tcp.complete": "connect",
    "http11.send_request_headers.complete": "request sent",
    "http11.receive_response_headers.complete": "first byte",
    "http11.receive_response_body.complete": "body done",
}
_PHASES_WITH_BODY = {**_PHASES, "http11.send_request_body.complete": "request sent"}
_PHASES_WITH_BODY.pop("http11.send_request_headers.complete")
EXCHANGE = "netgap.exchange"


@dataclass(frozen=True)
class Exchange:
    """What the transport measured, handed to the caller in the response's extensions."""

    duration_ms: float
    reused_connection: bool


class _Phases:
    def __init__(self, has_body: bool) -> None:
        self.seen: list[tuple[str, int]] = []
        self._names = _PHASES_WITH_BODY if has_body else _PHASES

    async def record(self, event: str, info: dict[str, Any]) -> None:
        phase = self._names.get(event)
        if phase is not None:
            self.seen.append((phase, time.time_ns()))

    def annotate(self, span: trace.Span, reused: bool) -> None:
        if not span.is_recording():
            return
        span.set_attribute("netgap.connection.reused", reused)
        for phase, timestamp in self.seen:
            span.add_event(phase, timestamp=timestamp)


class BodyReadingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        phases = _Phases(
            has_body=request.headers.get("content-length", "0") != "0"
            or "transfer-encoding" in request.headers
        )
        request.extensions["trace"] = phases.record
        start = time.perf_counter_ns()
        response = await self._inner.handle_async_request(request)
        try:
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        finally:
            await response.aclose()
        reused = not any(phase == "connect" for phase, _ in phases.seen)
        phases.annotate(trace.get_current_span(), reused)
        exchange = Exchange((time.perf_counter_ns() - start) / 1e6, reused)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            extensions={**response.extensions, EXCHANGE: exchange},
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
