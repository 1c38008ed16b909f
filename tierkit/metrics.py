"""Prometheus metrics of one tier, served at GET /metrics: RED per route, span-export health, and
(the web tier) its calls to the API tier with the untraced time of each, `netgap_remote_seconds`.

prometheus_client rather than the OpenTelemetry metrics SDK: an observation is a few counter
increments (~1 us against the SDK's several), the exposition needs no exporter thread, and each
app gets a registry of its own, so two apps in one process (the tests) never share a counter.

Names follow the OpenTelemetry HTTP semantic conventions as translated to Prometheus
(`http.server.request.duration` -> `http_server_request_duration_seconds`), attribute names
likewise (`http.response.status_code` -> `http_response_status_code`). The label sets stay
bounded whatever clients send: unmatched paths share one route label, unknown methods are
`_OTHER`, status codes outside 100-599 are `other`; `error_type` is the status code for a 5xx
answer (the conventions' `error.type`), the exception's class for a call that got no answer,
and empty otherwise.
"""

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from tierkit.tcpinfo import Testimony

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Seconds, 0.1 ms to 30 s in steps of at most 2.5x (mostly 1.5-2x): the healthy gap (~0.25 ms
# on loopback) and the story's broken one (6-20 s) both land in buckets narrow enough to read.
# Steps of 0.25 ms from 0.5 to 2 ms, where a healthy remote time lives on a busy machine: a
# quantile read from the buckets is then within 0.25 ms of the true one there.
BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.0025,
    0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
)  # fmt: skip

UNMATCHED_ROUTE = ""  # no route matched (404s): one label value, whatever the path
# Any other method a client sends counts as _OTHER, as the HTTP conventions say: a scan of
# made-up methods must not grow the label sets.
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY")
)


def status_label(status: int | None) -> str:
    if status is None:
        return ""
    return str(status) if 100 <= status < 600 else "other"


def error_label(status: int | None, error: str = "") -> str:
    if error:
        return error
    return str(status) if status is not None and status >= 500 else ""


class TierMetrics:
    """The metrics every tier has; `exposition()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._server = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OTel http.server.request.duration)",
            [
                "http_request_method",
                "http_route",
                "http_response_status_code",
                "url_scheme",
                "error_type",
            ],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.spans = SpanCounters(self.registry)
        self._children: dict[tuple[str, str, str, str, str], Any] = {}

    def observe_request(
        self, method: str, route: str, status: int, seconds: float, scheme: str = "http"
    ) -> None:
        key = (
            method if method in KNOWN_METHODS else "_OTHER",
            route,
            status_label(status),
            scheme if scheme in ("http", "https") else "other",
            error_label(status),
        )
        child = self._children.get(key)
        if child is None:  # labels() takes a lock and checks its arguments: once per key
            child = self._children[key] = self._server.labels(*key)
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SpanCounters:
    """Whether this tier's spans reach the backend: "the agent stopped reporting", visible."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exported = Counter(
            "netgap_spans_exported", "Spans the trace backend accepted", registry=registry
        )
        self.failed_exports = Counter(
            "netgap_span_export_failures",
            "Span batches the backend did not accept after the exporter's retries",
            registry=registry,
        )
        self.dropped = Counter(
            "netgap_spans_dropped",
            "Spans lost: their batch failed to export, or the export queue was full",
            registry=registry,
        )


class OutboundMetrics:
    """The web tier's calls to one dependency (`edge`, as the breakdown names it)."""

    def __init__(self, registry: CollectorRegistry, edge: str, *, address: str, port: int) -> None:
        self.edge = edge
        self._target = (address, str(port))
        self._by_outcome: dict[tuple[str, str, str], Any] = {}
        self._duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of HTTP client requests to the API tier (OTel http.client.request.duration)",
            [
                "edge",
                "http_request_method",
                "server_address",
                "server_port",
                "http_response_status_code",
                "error_type",
            ],
            buckets=BUCKETS,
            registry=registry,
        )
        self._remote = Histogram(
            "netgap_remote_seconds",
            "Per call, the client's duration minus the callee's own server time "
            "(its Server-Timing): the time no span explains",
            ["edge"],
            buckets=BUCKETS,
            registry=registry,
        ).labels(edge)
        self.active = Gauge(
            "http_client_active_requests",
            "Outbound requests in flight (OTel http.client.active_requests)",
            ["edge"],
            registry=registry,
        ).labels(edge)
        self._created = Counter(
            "http_client_connections_created",
            "Connections the pool dialled (each costs a TCP handshake on the path)",
            ["edge"],
            registry=registry,
        ).labels(edge)
        self._srtt = Histogram(
            "netgap_tcp_srtt_seconds",
            "The connection's smoothed RTT (TCP_INFO) at the end of each call",
            ["edge"],
            buckets=BUCKETS,
            registry=registry,
        ).labels(edge)
        self._retransmits = Counter(
            "netgap_tcp_retransmits",
            "Segments the calls' connections retransmitted during the calls (TCP_INFO)",
            ["edge"],
            registry=registry,
        ).labels(edge)
        self._open = Gauge(
            "http_client_open_connections",
            "Pool connections open (OTel http.client.open_connections)",
            ["edge", "http_connection_state"],
            registry=registry,
        )

    def watch_pool(self, active: Callable[[], float], idle: Callable[[], float]) -> None:
        self._open.labels(self.edge, "active").set_function(active)
        self._open.labels(self.edge, "idle").set_function(idle)

    def observe_call(
        self,
        method: str,
        status: int | None,
        seconds: float,
        new_connection: bool,
        error: str = "",
    ) -> None:
        """One call; `status` None when it failed without an answer (`error`: why)."""
        key = (method, status_label(status), error_label(status, error))
        child = self._by_outcome.get(key)
        if child is None:
            method_label = method if method in KNOWN_METHODS else "_OTHER"
            child = self._by_outcome[key] = self._duration.labels(
                self.edge, method_label, *self._target, key[1], key[2]
            )
        child.observe(seconds)
        if new_connection:
            self._created.inc()

    def observe_remote(self, seconds: float) -> None:
        self._remote.observe(seconds)

    def observe_tcp(self, testimony: Testimony) -> None:
        if testimony.info.srtt_us is not None:
            self._srtt.observe(testimony.info.srtt_us / 1e6)
        if testimony.retransmits:
            self._retransmits.inc(testimony.retransmits)
