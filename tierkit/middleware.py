"""Per-request telemetry beside the SERVER span: one JSON log line, the `Server-Timing`
header and the request's duration for the metrics.

A plain ASGI middleware inside the one that makes the SERVER span, so the current span is the
request's SERVER span. That one is contrib's OpenTelemetryMiddleware (from
opentelemetry-instrumentation-fastapi) with TRACING_MODE=standard, the default, or lean mode's
ServerSpanMiddleware (tierkit/lean/spans.py) with TRACING_MODE=lean. `traceresponse` is not
written here: in both modes that middleware has the global response propagator write it
(contrib's TraceResponsePropagator, which tierkit/telemetry.py sets unless one is set already).
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierkit.metrics import UNMATCHED_ROUTE

# Given the request's state (what the route left in `request.state`) and the server time so
# far in ms, the Server-Timing value to send, or None.
ServerTiming = Callable[[MutableMapping[str, Any], float], str | None]
# Given the method, the matched route (or ""), the status, the duration in seconds and the URL
# scheme.
ObserveRequest = Callable[[str, str, int, float, str], None]

log = logging.getLogger("tierkit.request")


class RequestTelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        server_timing: ServerTiming,
        observe: ObserveRequest,
    ) -> None:
        self.app = app
        self.server_timing = server_timing
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = trace.get_current_span()
        span = current.get_span_context()
        # Count from the SERVER span's own start, so Server-Timing adds up to its duration.
        start = getattr(current, "start_time", None) or time.time_ns()
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                timing = self.server_timing(state, (time.time_ns() - start) / 1e6)
                if timing:
                    headers.append("server-timing", timing)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            duration_ns = time.time_ns() - start
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            self.observe(scope["method"], route, status, duration_ns / 1e9, scope["scheme"])
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(duration_ns / 1e6, 3),
                "trace_id": trace.format_trace_id(span.trace_id) if span.is_valid else None,
                "span_id": trace.format_span_id(span.span_id) if span.is_valid else None,
                **({"error": state["error"]} if "error" in state else {}),
                # the outbound call was sent twice (its connection was closed unanswered)
                **({"retried": True} if state.get("retried") else {}),
            }
            # Written once this request's task yields, so after the SERVER span has ended: the
            # caller already has the answer, and formatting and writing the line would
            # otherwise lengthen the span past it (read as negative remote time on loopback).
            asyncio.get_running_loop().call_soon(
                functools.partial(log.info, "request", extra=fields)
            )
