"""Finished spans straight to OTLP protobuf bytes: what the SDK's `encode_spans(spans)
.SerializePartialToString()` produces, without building a protobuf object per span,
attribute and value first.

Why: profiled here, that object building was the largest single cost of tracing in both tiers
(about 30 us of CPU per span; this takes a few). The wire format is protobuf's, written field by
field in field-number order, as protobuf's own serializer does; tests/tierkit/lean/test_encoder.py
checks the bytes against the SDK's encoder for every kind of span and value it handles.

Repeated pieces are encoded once: each (resource, scope) header, and each attribute key-value
pair that recurs from span to span (method, route, host, ...), in bounded caches.
"""

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext

log = logging.getLogger("tierkit.lean.encoder")
# Under the SDK exporter's logger name, so the outage filter (tierkit.export) treats it the same.
_EXPORTER_LOG = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

_CACHE_LIMIT = 4096  # entries per cache before it starts afresh
_SMALL = [bytes((n,)) for n in range(128)]
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_pack_fixed32 = struct.Struct("<I").pack

# HAS_IS_REMOTE, and IS_REMOTE when the parent context came over the wire (SpanFlags).
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue message, as the SDK's _encode_value builds it."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            # protobuf refuses it, and the SDK then logs and leaves the attribute out
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _U64)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_key_value(str(k), v) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    name = _field(b"\x0a", key.encode()) if key else b""  # proto3 leaves out an empty string
    return _field(b"\x0a", name + _field(b"\x12", _value(value)))


class Encoder:
    """Encodes batches of finished spans; keeps its caches from batch to batch."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, type, Any], bytes] = {}
        self._headers: dict[
            tuple[int, int], tuple[Resource, InstrumentationScope | None, tuple[bytes, bytes]]
        ] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """An ExportTraceServiceRequest: spans grouped by resource, then by scope, in the order
        each group first appears (as the SDK groups them)."""
        # By identity: a Resource hashes by JSON-encoding its attributes, on every call.
        groups: dict[tuple[int, int], tuple[Resource, InstrumentationScope | None, list[bytes]]]
        groups = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            group = groups.get((id(resource), id(scope)))
            if group is None:
                group = groups[id(resource), id(scope)] = (resource, scope, [])
            group[2].append(_field(b"\x12", self._span(span)))
        by_resource: dict[int, list[bytes]] = {}
        resource_fields: dict[int, bytes] = {}
        schemas: dict[int, str] = {}
        for resource, scope, encoded in groups.values():
            resource_field, scope_field = self._header(resource, scope)
            resource_fields[id(resource)] = resource_field
            schemas[id(resource)] = resource.schema_url
            schema = scope.schema_url if scope is not None else None
            if schema:
                encoded.append(_field(b"\x1a", schema.encode()))
            scope_spans = _field(b"\x12", scope_field + b"".join(encoded))
            by_resource.setdefault(id(resource), []).append(scope_spans)
        out = []
        for key, parts in by_resource.items():
            body = resource_fields[key] + b"".join(parts)
            if schemas[key]:
                body += _field(b"\x1a", schemas[key].encode())
            out.append(_field(b"\x0a", body))
        return b"".join(out)

    def _header(
        self, resource: Resource, scope: InstrumentationScope | None
    ) -> tuple[bytes, bytes]:
        """The ResourceSpans.resource field and the ScopeSpans.scope field."""
        key = (id(resource), id(scope))
        cached = self._headers.get(key)
        # The cache holds the objects, so their ids cannot be reused while they are in it.
        if cached is not None and cached[0] is resource and cached[1] is scope:
            return cached[2]
        resource_field = _field(b"\x0a", self._attributes(b"\x0a", resource.attributes))
        scope_body = b""
        if scope is not None:
            if scope.name:
                scope_body += _field(b"\x0a", scope.name.encode())
            if scope.version:
                scope_body += _field(b"\x12", scope.version.encode())
            scope_body += self._attributes(b"\x1a", scope.attributes)
        found = (resource_field, _field(b"\x0a", scope_body))
        if len(self._headers) >= _CACHE_LIMIT:
            self._headers.clear()
        self._headers[key] = (resource, scope, found)
        return found

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        """Repeated KeyValue fields under `tag`; a value that cannot be encoded is left out
        and logged, as the SDK does."""
        if not attributes:
            return b""
        pairs = self._pairs
        out = []
        for key, value in _items(attributes):
            cache_key = (key, type(value), value)
            try:
                encoded = pairs.get(cache_key)
            except TypeError:  # unhashable (a list value): not cached
                encoded = None
                cache_key = None  # type: ignore[assignment]
            if encoded is None:
                try:
                    encoded = _key_value(key, value)[1:]  # its body; the tag is `tag`
                except Exception as exc:  # one bad value must not lose the span
                    log.exception("Failed to encode key %s: %s", key, exc)
                    continue
                if cache_key is not None:
                    if len(pairs) >= _CACHE_LIMIT:
                        pairs.clear()
                    pairs[cache_key] = encoded
            out.append(tag + encoded)
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        if context is None:
            raise ValueError(f"span {span.name!r} has no span context")
        parent = span.parent
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            parts.append(_field(b"\x1a", _trace_state(context).encode()))
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_field(b"\x2a", span.name.encode()))
        parts.append(b"\x30" + _SMALL[span.kind.value + 1])
        if span.start_time:
            parts.append(b"\x39" + _pack_fixed64(span.start_time))
        if span.end_time:
            parts.append(b"\x41" + _pack_fixed64(span.end_time))
        parts.append(self._attributes(b"\x4a", getattr(span, "_attributes", None)))
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            parts.append(_field(b"\x5a", self._event(event)))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in span.links:
            parts.append(_field(b"\x6a", self._link(link)))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        status_body = b""
        if status.description:
            status_body += _field(b"\x12", status.description.encode())
        if status.status_code.value:
            status_body += b"\x18" + _SMALL[status.status_code.value]
        parts.append(_field(b"\x7a", status_body))
        parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return b"".join(parts)

    def _event(self, event: Event) -> bytes:
        body = b"\x09" + _pack_fixed64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(b"\x12", event.name.encode())
        body += self._attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        return body

    def _link(self, link: Link) -> bytes:
        context = link.context
        body = (
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
            + self._attributes(b"\x22", link.attributes)
        )
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        return body + (b"\x35" + _pack_fixed32(0x300 if context.is_remote else 0x100))


def _items(attributes: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The SDK's BoundedAttributes iterates under a lock and looks each key up again through
    the Mapping ABC; its underlying dict, where there is one, gives the same pairs at once."""
    inner = getattr(attributes, "_dict", None)
    return (inner if isinstance(inner, dict) else attributes).items()


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


class EncoderMismatch(RuntimeError):
    """The SDK's internals no longer behave as this encoder reads them."""


def probe(encoder: Encoder) -> None:
    """Encode one span of every kind of field both ways, and fail loudly at start unless the
    bytes are the same: the encoder reads private fields of the SDK's spans (their attribute
    dict), and an SDK that renamed them would otherwise lose every attribute without a word."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind, StatusCode

    provider = TracerProvider(resource=Resource({"service.name": "probe", "n": 1}))
    tracer = provider.get_tracer("tierkit.lean.probe", "1.0")
    with tracer.start_as_current_span("parent") as parent:
        span = tracer.start_span(
            "probe",
            kind=SpanKind.CLIENT,
            attributes={"s": "x", "b": True, "i": -3, "f": 0.5, "l": [1, 2], "big": 2**63},
            links=[Link(parent.get_span_context(), {"k": "v"})],
        )
        span.add_event("event", {"e": 7})
        span.set_status(StatusCode.ERROR, "probe")
        span.end()
    spans = [span] if isinstance(span, ReadableSpan) else []
    logger = logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal")
    quiet = logging.Filter()  # both encoders log the out-of-range integer; expected here
    quiet.filter = lambda record: False  # type: ignore[method-assign]
    logger.addFilter(quiet)
    log.addFilter(quiet)
    try:
        theirs = encode_spans(spans).SerializePartialToString()
        ours = encoder.request(spans)
    finally:
        logger.removeFilter(quiet)
        log.removeFilter(quiet)
    if not spans or ours != theirs:
        raise EncoderMismatch(
            "tierkit.lean.encoder does not match the OpenTelemetry SDK's OTLP encoder "
            f"({len(ours)} vs {len(theirs)} bytes for the probe span): run TRACING_MODE=standard"
        )


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its endpoint, headers, TLS, compression, timeout and
    retries, all from OTEL_*), encoding with this module: the same bytes at a fraction of the
    CPU. Checked against the SDK's encoder when made (`probe`). What it leaves out: the SDK's
    opt-in self-metrics of the exporter."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint=endpoint)
        self._encoder = Encoder()
        probe(self._encoder)

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
