"""OpenTelemetry for both tiers, configured by the standard OTEL_* environment variables.

Two modes (`TRACING_MODE`):
- `standard`, the default: the SERVER spans come from opentelemetry-instrumentation-fastapi,
  the CLIENT span from opentelemetry-instrumentation-httpx, exported by the SDK's own OTLP
  exporters. Every OTEL_* variable those packages document works as they document it.
- `lean`: the hand-written spans and OTLP encoder of `tierkit.lean` (its docstring says what
  each piece saves and gives up).

What we read ourselves (to decide and to report): OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER,
OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL and OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT. The SDK and the
instrumentations read the rest: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _COMPRESSION,
OTEL_PROPAGATORS, OTEL_PYTHON_[FASTAPI_|HTTPX_]EXCLUDED_URLS,
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*, OTEL_SEMCONV_STABILITY_OPT_IN.

Run under `opentelemetry-instrument` (zero-code instrumentation, as the OpenTelemetry Operator
injects it), a tier reuses the tracer provider that is already set and instruments nothing
twice: the app is already instrumented (the instrumentor replaced `fastapi.FastAPI`), and the
web tier's client transport is not one the global httpx instrumentation patches, so it is
instrumented here, once.
"""

import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    get_global_response_propagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from tierkit.env import SettingsError, env_bool, env_choice, env_str
from tierkit.export import CountingBatchSpanProcessor, OutageAwareExporter
from tierkit.metrics import SpanCounters

log = logging.getLogger("tierkit.telemetry")

MODES = ("standard", "lean")
EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
_DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
# Routes that must stay cheap and out of traces (probes, scrapes): given to the instrumentation
# as excluded URLs, beside whatever OTEL_PYTHON_[FASTAPI_]EXCLUDED_URLS adds.
UNTRACED_PATHS = ("/healthz", "/metrics")
# The stable HTTP semantic conventions, unless the user's own OTEL_SEMCONV_STABILITY_OPT_IN says
# otherwise: the instrumentations read only this variable, once, when first used.
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

# Given a recording CLIENT span and its response's extensions, adds to the span before it ends.
ResponseHook = Callable[[trace.Span, Mapping[str, Any]], None]


@dataclass(frozen=True)
class TelemetrySettings:
    default_service: str
    disabled: bool = False
    mode: str = "standard"
    exporters: tuple[str, ...] = ("otlp",)
    protocol: str = "http/protobuf"
    endpoint: str = "http://localhost:4318/v1/traces"
    # OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS, as contrib reads them
    excluded_urls: str = ""
    semconv_opt_in: str = "http"

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
            mode=env_choice(environ, "TRACING_MODE", "standard", MODES),
            exporters=tuple(name for name in exporters if name != "none"),
            protocol=protocol,
            endpoint=_traces_endpoint(environ, protocol),
            excluded_urls=env_str(
                environ,
                "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
                env_str(environ, "OTEL_PYTHON_EXCLUDED_URLS", ""),
            ),
            semconv_opt_in=env_str(environ, SEMCONV_OPT_IN, "http"),
        )

    @property
    def lean(self) -> bool:
        return self.mode == "lean"


def _traces_endpoint(environ: Mapping[str, str], protocol: str) -> str:
    """The URL the exporter will use, resolved the way the OTLP specification says."""
    signal_specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if signal_specific:
        return signal_specific
    base = env_str(environ, "OTEL_EXPORTER_OTLP_ENDPOINT", _DEFAULT_ENDPOINTS[protocol])
    if protocol == "grpc":
        return base
    return base.rstrip("/") + "/v1/traces"


def excluded_urls(settings: TelemetrySettings) -> str:
    """Contrib's comma-separated regexes (searched in the full URL): ours, anchored at the
    path's end (or its query), then the user's."""
    ours = [f"{path}(\\?|$)" for path in UNTRACED_PATHS]
    return ",".join([*ours, *filter(None, settings.excluded_urls.split(","))])


class Telemetry:
    """The tracer provider of one process, and the instrumentation that uses it."""

    def __init__(
        self,
        settings: TelemetrySettings,
        provider: TracerProvider | None,
        exporters: Sequence[SpanExporter] = (),
        *,
        owned: bool = True,
    ) -> None:
        self.settings = settings
        self._provider = provider
        self._exporters = exporters
        # A provider someone else set up (zero-code instrumentation) is theirs to shut down.
        self._owned = owned

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

    def instrument_app(self, app: FastAPI) -> None:
        """A SERVER span per request, outermost (call it once the app's own middleware is
        added). Standard: contrib's FastAPI instrumentation, unless zero-code instrumentation
        already did it when the app was made."""
        if self._provider is None:
            return
        if self.settings.lean:
            from tierkit.lean.spans import ServerSpanMiddleware

            app.add_middleware(
                ServerSpanMiddleware,
                tracer=self._provider.get_tracer("tierkit.lean"),
                excluded_paths=UNTRACED_PATHS,
            )
            return
        if FastAPIInstrumentor().is_instrumented_by_opentelemetry:
            return  # opentelemetry-instrument's FastAPI class instrumented it on creation
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self._provider,
            excluded_urls=excluded_urls(self.settings),
            # One span per request: the ASGI receive/send spans would triple the span count
            # and most of contrib's cost, and say nothing about the network.
            exclude_spans=["receive", "send"],
        )

    def http_client(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        peer_service: str | None,
        response_hook: ResponseHook,
        **client_options: Any,
    ) -> httpx.AsyncClient:
        """An httpx client on `transport` with a CLIENT span per request (contrib's httpx
        instrumentation, or lean mode's); `response_hook` adds to each span before it ends,
        and `peer_service`, the callee's service.name where the caller knows it, goes on each
        span as `peer.service` (a call that never reached the callee has no span of the
        callee's to name the edge by)."""
        if self._provider is None:
            return httpx.AsyncClient(transport=transport, **client_options)
        peer = {"peer.service": peer_service} if peer_service else {}
        if self.settings.lean:
            from tierkit.lean.spans import TracedTransport

            traced = TracedTransport(
                transport, self._provider.get_tracer("tierkit.lean"), peer, response_hook
            )
            return httpx.AsyncClient(transport=traced, **client_options)
        client = httpx.AsyncClient(transport=transport, **client_options)

        # Async: contrib calls only coroutine hooks for an AsyncClient.
        async def request_hook(span: trace.Span, request: Any) -> None:
            if peer and span.is_recording():
                span.set_attributes(peer)

        async def contrib_response_hook(span: trace.Span, request: Any, response: Any) -> None:
            if span.is_recording():
                response_hook(span, response.extensions)

        HTTPXClientInstrumentor.instrument_client(
            client,
            tracer_provider=self._provider,
            request_hook=request_hook,
            response_hook=contrib_response_hook,
        )
        return client

    def summary(self) -> dict[str, str]:
        """What a user checks first when no traces show up."""
        if self._provider is None:
            return {"tracing": "disabled (OTEL_SDK_DISABLED=true)"}
        resource = self._provider.resource.attributes
        exporters = self.settings.exporters
        if not self._owned:
            return {
                "service": str(resource.get(SERVICE_NAME)),
                "mode": self.settings.mode,
                "provider": "already set (zero-code instrumentation): its own exporters",
                "sampler": self._provider.sampler.get_description(),
            }
        return {
            "service": str(resource.get(SERVICE_NAME)),
            "mode": self.settings.mode,
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
        stop = self._provider.shutdown if self._owned else self._provider.force_flush
        # The SDK's shutdown waits up to 30 s per processor; a thread lets us bound it.
        flusher = threading.Thread(target=stop, daemon=True)
        flusher.start()
        flusher.join(timeout_s)
        if flusher.is_alive():
            log.warning("span flush did not finish in %.1f s; unsent spans are dropped", timeout_s)


# The providers this module made, so a second app in one process (the tests) makes its own
# rather than reusing the first one's as if zero-code instrumentation had set it.
_OURS: "weakref.WeakSet[TracerProvider]" = weakref.WeakSet()


def setup_telemetry(settings: TelemetrySettings, counters: SpanCounters | None = None) -> Telemetry:
    """The tracer provider `settings` ask for; `counters` (if given) count the OTLP export's
    accepted, failed and dropped spans."""
    if settings.disabled:
        return Telemetry(settings, None)
    # Read by the instrumentations when first used; the user's own value wins (the setting
    # is read from it). Under zero-code instrumentation they were used before this runs.
    os.environ.setdefault(SEMCONV_OPT_IN, settings.semconv_opt_in)
    # contrib's own: traceresponse on every traced answer (untyped functions)
    if get_global_response_propagator() is None:  # type: ignore[no-untyped-call]
        set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider) and existing not in _OURS:
        reused = Telemetry(settings, existing, owned=False)
        if reused.service.startswith("unknown_service"):
            log.warning(
                "the tracer provider set before this tier has no service.name: set "
                "OTEL_SERVICE_NAME=%s (edges and peer.service are named by it)",
                settings.default_service,
            )
        return reused
    provider = TracerProvider(resource=_resource(settings.default_service))
    exporters = _exporters(settings, counters)
    for exporter in exporters:
        counted = counters if isinstance(exporter, OutageAwareExporter) else None
        try:
            processor = CountingBatchSpanProcessor(exporter, counted)
        except ValueError as exc:  # the SDK's check of the OTEL_BSP_* sizes against each other
            raise SettingsError(f"OTEL_BSP_*: {exc}") from None
        provider.add_span_processor(processor)
    _OURS.add(provider)
    if not isinstance(existing, TracerProvider):
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
    if settings.lean:
        from tierkit.lean.encoder import LeanOTLPSpanExporter

        return LeanOTLPSpanExporter(endpoint=settings.endpoint)
    return OTLPSpanExporter(endpoint=settings.endpoint)
