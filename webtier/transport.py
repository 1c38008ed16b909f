"""The transport under the web tier's API client: tierkit's HTTP/1.1 pool, plus span events.

opentelemetry-instrumentation-httpx wraps a client's transport and ends its CLIENT span when the
transport returns; with httpx's own transport that is when the response *headers* arrive
(opentelemetry-python-contrib #2304), so under a bandwidth cap the body transfer would be misfiled
as web time. tierkit.http1 returns only after the whole body is read, so the standard CLIENT span
covers the whole exchange; this layer notes the connection phases on that span.
"""

import httpx
from opentelemetry import trace

from tierkit.http1 import EXCHANGE, Http1Pool, Http1Transport, Phases

__all__ = ["EXCHANGE", "PhaseRecordingTransport", "Phases"]


class PhaseRecordingTransport(Http1Transport):
    def __init__(self, pool: Http1Pool) -> None:
        super().__init__(pool)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        span = trace.get_current_span()
        if span.is_recording():
            phases: Phases = response.extensions[EXCHANGE]
            span.set_attribute("netgap.connection.reused", phases.reused)
            for name, timestamp in phases.events():
                span.add_event(name, timestamp=timestamp)
        return response
