"""OpenTelemetry for both tiers, configured by the standard OTEL_* environment variables.

What we read ourselves (to decide and to report): OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER,
OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL and OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT. The SDK reads
the rest itself, as it documents: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _COMPRESSION,
OTEL_PROPAGATORS.
"""

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import Counter

from tierkit.env import SettingsError, env_bool, env_str
from tierkit.metrics import SpanCounters
from tierkit.otlp_encode import Encoder
from tierkit.tracing import ServerSpanMiddleware, TracedTransport

log = logging.getLogger("tierkit.telemetry")
# Under the SDK exporter's logger name, so the outage filter below treats it the same.
_EXPORTER_LOG = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
_DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
# Routes that must stay cheap and out of traces (probes, scrapes).
UNTRACED_PATHS = ("/healthz", "/metrics")


@dataclass(frozen=True)
class TelemetrySettings:
    default_service: str
    disabled: bool = False
    exporters: tuple[str, ...] = ("otlp",)
    protocol: str = "http/protobuf"
    endpoint: str = "http://localhost:4318/v1/traces"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], default_service: str) -> "TelemetrySettings":
        exporters = tuple(
            name.strip().lower()
            for name in env_str(environ, "OTEL_TRACES_EXPORTER", "otlp").split(",")
            if name.strip()
        )
        for name in exporters:
            if name not in EXPORTERS:
                raise SettingsError(
                    f"OTEL_TRACES_EXPORTER must be a list of {', '.join(EXPORTERS)}, got {name!r}"
                )
        protocol_var = (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
            if environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
            else "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        protocol = env_str(environ, protocol_var, "http/protobuf").lower()
        if protocol not in PROTOCOLS:
            raise SettingsError(f"{protocol_var} must be one of {', '.join(PROTOCOLS)}")
        return cls(
            default_service=default_service,
            disabled=env_bool(environ, "OTEL_SDK_DISABLED", False),
            exporters=tuple(name for name in exporters if name != "none"),
            protocol=protocol,
            endpoint=_traces_endpoint(environ, protocol),
        )


def _traces_endpoint(environ: Mapping[str, str], protocol: str) -> str:
    """The URL the exporter will use, resolved the way the OTLP specification says."""
    signal_specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if signal_specific:
        return signal_specific
    base = env_str(environ, "OTEL_EXPORTER_OTLP_ENDPOINT", _DEFAULT_ENDPOINTS[protocol])
    if protocol == "grpc":
        return base
    return base.rstrip("/") + "/v1/traces"


class Telemetry:
    """The tracer provider of one process, and the instrumentation that uses it."""

    def __init__(
        self,
        settings: TelemetrySettings,
        provider: TracerProvider | None,
        exporters: Sequence[SpanExporter] = (),
    ) -> None:
        self.settings = settings
        self._provider = provider
        self._exporters = exporters

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @property
    def service(self) -> str:
        """service.name as the spans carry it; known with tracing off too (metrics use it)."""
        provider = self._provider
        resource = provider.resource if provider else _resource(self.settings.default_service)
        return str(resource.attributes[SERVICE_NAME])

    def tracer(self, name: str) -> trace.Tracer:
        if self._provider is None:
            return trace.NoOpTracer()
        return self._provider.get_tracer(name)

    def instrument_app(self, app: FastAPI, *, testify: bool) -> None:
        """A SERVER span per request, outside the app's other middleware (add it last); with
        `testify`, carrying the TCP_INFO of the connection the request came in on."""
        if self._provider is None:
            return
        app.add_middleware(
            ServerSpanMiddleware,
            tracer=self._provider.get_tracer("tierkit.tracing"),
            excluded_paths=UNTRACED_PATHS,
            testify=testify,
        )

    def traced(
        self, transport: httpx.AsyncBaseTransport, *, peer_service: str | None = None
    ) -> httpx.AsyncBaseTransport:
        """`transport`, with a CLIENT span around each request it makes; `peer_service`, the
        callee's service.name where the caller knows it, goes on each span as `peer.service`."""
        if self._provider is None:
            return transport
        tracer = self._provider.get_tracer("tierkit.tracing")
        return TracedTransport(transport, tracer, peer_service=peer_service)

    def summary(self) -> dict[str, str]:
        """What a user checks first when no traces show up."""
        if self._provider is None:
            return {"tracing": "disabled (OTEL_SDK_DISABLED=true)"}
        resource = self._provider.resource.attributes
        exporters = self.settings.exporters
        return {
            "service": str(resource.get(SERVICE_NAME)),
            "exporter": ",".join(exporters) or "none",
            "protocol": self.settings.protocol if "otlp" in exporters else "-",
            "endpoint": self.settings.endpoint if "otlp" in exporters else "-",
            "sampler": self._provider.sampler.get_description(),
        }

    def shutdown(self, timeout_s: float) -> None:
        """Flush what is queued, but never hold up the process longer than `timeout_s`."""
        if self._provider is None:
            return
        for exporter in self._exporters:
            # Retrying against a backend that is down would only delay the exit.
            if isinstance(exporter, OutageAwareExporter) and exporter.failing:
                exporter.shutdown()
        # The SDK's shutdown waits up to 30 s per processor; a thread lets us bound it.
        flusher = threading.Thread(target=self._provider.shutdown, daemon=True)
        flusher.start()
        flusher.join(timeout_s)
        if flusher.is_alive():
            log.warning("span flush did not finish in %.1f s; unsent spans are dropped", timeout_s)


def setup_telemetry(settings: TelemetrySettings, counters: SpanCounters | None = None) -> Telemetry:
    """The tracer provider `settings` ask for; `counters` (if given) count the OTLP export's
    accepted, failed and dropped spans."""
    if settings.disabled:
        return Telemetry(settings, None)
    provider = TracerProvider(resource=_resource(settings.default_service))
    exporters = _exporters(settings, counters)
    for exporter in exporters:
        counted = counters if isinstance(exporter, OutageAwareExporter) else None
        try:
            processor = CountingBatchSpanProcessor(exporter, counted)
        except ValueError as exc:  # the SDK's check of the OTEL_BSP_* sizes against each other
            raise SettingsError(f"OTEL_BSP_*: {exc}") from None
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return Telemetry(settings, provider, exporters)


def _resource(default_service: str) -> Resource:
    resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    return resource


def _exporters(settings: TelemetrySettings, counters: SpanCounters | None) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    if "console" in settings.exporters:
        # One span a line, so the output can be grepped and tailed.
        exporters.append(
            ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
        )
    if "otlp" in settings.exporters:
        exporters.append(
            OutageAwareExporter(_otlp_exporter(settings), settings.endpoint, counters=counters)
        )
    return exporters


def _otlp_exporter(settings: TelemetrySettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=settings.endpoint)
    return LeanOTLPSpanExporter(endpoint=settings.endpoint)


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its endpoint, headers, TLS, compression, timeout and
    retries, all from OTEL_*), encoding with tierkit.otlp_encode: the same bytes at a fraction
    of the CPU. What it leaves out: the SDK's opt-in self-metrics of the exporter."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint=endpoint)
        self._encoder = Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            body = self._encoder.request(spans)
        except Exception:  # a span that cannot be encoded fails its batch, as in the SDK
            _EXPORTER_LOG.exception("Failed to encode span batch")
            return SpanExportResult.FAILURE
        if 0 < self._max_request_size < len(body):
            _EXPORTER_LOG.warning(
                "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                len(body),
                self._max_request_size,
            )
            return SpanExportResult.FAILURE
        sent = self._client.export(body)
        return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it drops because its queue is full (the
    SDK only logs it). Swaps in its own queue for the pinned SDK's BatchProcessor's: a private
    detail, checked by tests/tierkit/test_metrics.py."""

    def __init__(self, exporter: SpanExporter, counters: SpanCounters | None) -> None:
        super().__init__(exporter)
        if counters is not None:
            batcher = self._batch_processor
            batcher._queue = _CountingQueue(batcher._max_queue_size, counters.dropped)


class _CountingQueue(collections.deque[ReadableSpan]):
    """A bounded queue as the SDK's (appendleft drops the oldest span when full), which counts
    each span it drops. The check and the drop happen under one lock that the export thread's
    pops take too: checked outside it (as the SDK does to log), a pop between check and
    append would count a span that was not dropped."""

    def __init__(self, limit: int, dropped: Counter) -> None:
        super().__init__()
        self._limit = limit
        self._dropped = dropped
        self._lock = threading.Lock()

    def appendleft(self, span: ReadableSpan) -> None:
        with self._lock:
            if len(self) >= self._limit:
                super().pop()
                self._dropped.inc()
            super().appendleft(span)

    def pop(self) -> ReadableSpan:  # type: ignore[override]  # a deque pops no index
        with self._lock:
            return super().pop()


# The SDK and the exporters log every retry, every failed batch and every dropped span.
_NOISY_LOGGERS = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


class _Complaints(logging.Filter):
    """Drops the noisy loggers' records, keeping the first complaint of the current export
    (for our one warning) and whether there was one (a retry loop in progress)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and self.first is None:
            self.first = record.getMessage()
        return False


class OutageAwareExporter(SpanExporter):
    """A dead trace backend costs one warning and some dropped spans, never a slow request.

    Requests only ever enqueue spans (the batch processor's queue is bounded). This wrapper
    keeps the export thread from retrying against a backend known to be down: while it is
    down, batches are dropped at once and the backend is probed again every `probe_every_s`.
    """

    def __init__(
        self,
        inner: SpanExporter,
        endpoint: str,
        probe_every_s: float = 5.0,
        counters: SpanCounters | None = None,
    ) -> None:
        self._inner = inner
        self._counters = counters
        self._endpoint = endpoint
        self._probe_every_s = probe_every_s
        self._down_until = 0.0
        self._down = False
        self._dropped = 0
        self._shut_down = False
        self._complaints = _Complaints()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(self._complaints)

    @property
    def failing(self) -> bool:
        """Down, or retrying right now."""
        return self._down or self._complaints.first is not None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._down and time.monotonic() < self._down_until:
            self._lost(spans)
            return SpanExportResult.FAILURE
        self._complaints.first = None
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the export thread
            self._complaints.first = f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            if self._counters is not None:
                self._counters.exported.inc(len(spans))
            self._recovered()
        else:
            self._lost(spans)
            self._failed()
        return result

    def _lost(self, spans: Sequence[ReadableSpan]) -> None:
        self._dropped += len(spans)
        if self._counters is not None:
            self._counters.failed_exports.inc()
            self._counters.dropped.inc(len(spans))

    def _failed(self) -> None:
        self._down_until = time.monotonic() + self._probe_every_s
        if not self._down:
            self._down = True
            log.warning(
                "trace export to %s failing (%s); dropping spans until it recovers, "
                "requests are not affected",
                self._endpoint,
                self._complaints.first or "no detail",
            )

    def _recovered(self) -> None:
        if self._down:
            log.warning(
                "trace export to %s recovered; at least %d spans were dropped",
                self._endpoint,
                self._dropped,
            )
        self._down = False
        self._dropped = 0
        self._complaints.first = None

    def shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
