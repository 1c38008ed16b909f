"""The transport under the web tier's API client: tierkit's HTTP/1.1 pool, plus what each call
tells: span events for its connection phases, the connection's TCP_INFO as span attributes
(tierkit.tcpinfo), the call's timing, and the outbound metrics.

opentelemetry-instrumentation-httpx wraps a client's transport and ends its CLIENT span when the
transport returns; with httpx's own transport that is when the response *headers* arrive
(opentelemetry-python-contrib #2304), so under a bandwidth cap the body transfer would be misfiled
as web time. tierkit.http1 returns only after the whole body is read, so the standard CLIENT span
covers the whole exchange; this layer notes the connection phases on that span.

The remote time of a call, the CLIENT span's duration minus the API's own server time (its
`Server-Timing: app`), is worked out here once and used three ways, so they agree to the
nanosecond: the `netgap.remote_seconds` span attribute, the `netgap_remote_seconds` histogram
and the web tier's own `Server-Timing: net`.
"""

import time
from dataclasses import dataclass

import httpx
from opentelemetry import trace

from tierkit.http1 import EXCHANGE, Http1Pool, Http1Transport, Phases
from tierkit.metrics import OutboundMetrics
from tierkit.server_timing import server_timing_durations
from tierkit.tcpinfo import Witness
from tierkit.tracing import CALL_START

__all__ = ["CALL", "EXCHANGE", "CallTiming", "PhaseRecordingTransport", "Phases"]

CALL = "netgap.call"  # response.extensions: the CallTiming


@dataclass(frozen=True)
class CallTiming:
    seconds: float  # from the CLIENT span's start (else this transport's) to the last byte
    api_s: float | None  # the API's own server time, None if it sent no Server-Timing `app`

    @property
    def remote_s(self) -> float | None:
        """What no span explains; 0 rather than the microseconds below it that clocks give
        on loopback when the server ends its span just after answering."""
        return None if self.api_s is None else max(self.seconds - self.api_s, 0.0)


class PhaseRecordingTransport(Http1Transport):
    def __init__(
        self, pool: Http1Pool, metrics: OutboundMetrics | None = None, *, tcp_info: bool = True
    ) -> None:
        super().__init__(pool)
        self._metrics = metrics
        self._witness = Witness() if tcp_info else None
        if metrics is not None:
            metrics.watch_pool(
                lambda: pool.connections - pool.idle_connections, lambda: pool.idle_connections
            )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start_ns: int = request.extensions.get(CALL_START) or time.time_ns()
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            if self._metrics is not None:
                self._metrics.observe_call(None, (time.time_ns() - start_ns) / 1e9, False)
            raise
        phases: Phases = response.extensions[EXCHANGE]
        api_ms = server_timing_durations(response.headers.get("server-timing")).get("app")
        timing = CallTiming(
            (phases.body_done - start_ns) / 1e9, None if api_ms is None else api_ms / 1e3
        )
        response.extensions[CALL] = timing
        remote_s = timing.remote_s
        span = trace.get_current_span()
        recording = span.is_recording()
        testimony = None
        if self._witness is not None and (recording or self._metrics is not None):
            sock = response.extensions["network_stream"].get_extra_info("socket")
            testimony = self._witness.testify(sock, not phases.reused)
        if self._metrics is not None:
            self._metrics.observe_call(response.status_code, timing.seconds, not phases.reused)
            if remote_s is not None:
                self._metrics.observe_remote(remote_s)
            if testimony is not None:
                self._metrics.observe_tcp(testimony)
        if recording:
            for name, timestamp in phases.events():
                span.add_event(name, timestamp=timestamp)
            # What netgap's breakdown reads goes last (the TCP testimony's srtt and
            # retransmissions end its attributes): its fast path scans from the end. One call:
            # the SDK checks and locks per call as well as per attribute.
            found = testimony.attributes() if testimony is not None else {}
            if remote_s is not None:
                found["netgap.remote_seconds"] = remote_s
            found["netgap.connection.reused"] = phases.reused
            span.set_attributes(found)
        return response
