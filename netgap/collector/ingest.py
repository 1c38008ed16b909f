"""OTLP trace export bodies -> a validated ExportTraceServiceRequest, all or nothing.

`decode_body` takes an OTLP/HTTP body as it arrived (protobuf or JSON, maybe gzipped);
`validate_request` checks a decoded request (what OTLP/gRPC hands over) before it is stored.
Both raise IngestError, carrying the HTTP status to answer, for anything that must not be
stored; then no span of that request is kept.

OTLP/JSON is read with netgap.otlp_json (lenient about key case and number encodings, strict
about ids and times) and turned into the protobuf request, so both encodings are stored alike.
"""

import json
import zlib
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from netgap.otlp_json import spans_from_json
from netgap.otlp_proto import request_from_spans

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Some exporters say application/protobuf; both name the same encoding.
MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}

# Content-Encoding -> zlib's wbits: gzip, and deflate (which HTTP defines as the zlib format)
CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_GZIP_MEMBERS = 64


class IngestError(ValueError):
    """A request to refuse as a whole: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str | None:
    """The OTLP encoding a Content-Type names (parameters such as charset ignored), or None."""
    if not content_type:
        return None
    return MEDIA_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def decode_body(
    body: bytes, content_type: str, content_encoding: str, max_bytes: int
) -> ExportTraceServiceRequest:
    """`content_type` is PROTOBUF or JSON (see media_type); `content_encoding` "" or one of
    CODINGS."""
    if content_encoding:
        body = decompress(body, content_encoding, max_bytes)
    if content_type == PROTOBUF:
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError:
            raise IngestError(
                400, "body is not a valid protobuf ExportTraceServiceRequest"
            ) from None
        # An empty request encodes as no bytes at all, so bytes that decode to one without
        # resource spans hold only fields it does not have: some other message.
        if body and not request.resource_spans:
            raise IngestError(400, "body is protobuf but not an ExportTraceServiceRequest")
    else:
        request = _request_from_json(body)
    validate_request(request)
    return request  # type: ignore[no-any-return]  # protobuf's stubs type FromString loosely


def validate_request(request: ExportTraceServiceRequest) -> None:
    """Every span needs a 16-byte trace id and an 8-byte span id, neither all zero, and an
    8-byte parent span id or none."""
    for r_index, resource_spans in enumerate(request.resource_spans):
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or (parent and len(parent) != 8)
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                ):
                    raise IngestError(
                        400,
                        f"resourceSpans[{r_index}]: span {span.name!r} has invalid ids (trace"
                        f" id {len(trace_id)} bytes, span id {len(span_id)}, parent"
                        f" {len(parent)}; want 16, 8 and 8 or none, not all zero)",
                    )


def decompress(body: bytes, coding: str, max_bytes: int) -> bytes:
    """The decompressed body, refusing more than `max_bytes` of output (a gzip bomb costs us
    nothing) and anything that is not complete `coding` ("gzip" or "deflate") data."""
    out: list[bytes] = []
    size = 0
    data = body
    for _ in range(_MAX_GZIP_MEMBERS):  # concatenated gzip members are valid gzip
        decompressor = zlib.decompressobj(wbits=CODINGS[coding])
        try:
            chunk = decompressor.decompress(data, max_bytes - size + 1)
        except zlib.error as exc:
            raise IngestError(400, f"body is not valid {coding} ({exc})") from None
        size += len(chunk)
        if size > max_bytes:
            raise IngestError(413, f"body is over {max_bytes} bytes once decompressed")
        if not decompressor.eof:
            raise IngestError(400, f"body is truncated {coding}")
        out.append(chunk)
        data = decompressor.unused_data
        if not data:
            return b"".join(out)
    raise IngestError(400, f"body has more than {_MAX_GZIP_MEMBERS} gzip members")


def _request_from_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise IngestError(400, f"body is not valid JSON ({exc})") from None
    if not isinstance(document, Mapping):
        raise IngestError(400, "body is JSON but not an OTLP ExportTraceServiceRequest object")
    if document and not {"resourceSpans", "resource_spans", "result"} & document.keys():
        raise IngestError(400, "body is JSON but has no resourceSpans: not OTLP trace data")
    try:
        return request_from_spans(spans_from_json(document))
    # The reader is strict about ids and times (OtlpJsonError), but other malformed shapes
    # surface as whatever Python raises on them (and a time past 64 bits as OverflowError
    # here); none of it may escape as a traceback.
    except Exception as exc:
        raise IngestError(400, f"body is not OTLP/JSON trace data: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
