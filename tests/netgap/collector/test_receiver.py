"""OTLP in: the real OpenTelemetry exporters (HTTP and gRPC), OTLP/JSON, compression, and
every way a request can be refused, over real loopback sockets."""

import gzip
import json
import time
import zlib
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from netgap.collector.server import Collector, serving_in_thread
from netgap.otlp_json import spans_from_json
from tests.netgap.collector.conftest import StartCollector, local_settings
from tests.netgap.collector.spans import hex_id, sdk_trace
from tests.netgap.spans import NOW_NS, new_span_id, new_trace_id

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def stored_trace(http: httpx.Client, collector: Collector, trace_id: str) -> httpx.Response:
    return http.get(f"{collector.query_url}/api/v3/traces/{trace_id}")


def assert_same_spans(sdk: list[ReadableSpan], served: httpx.Response) -> None:
    assert served.status_code == 200, served.text
    back = {s.span_id: s for s in spans_from_json(served.json())}
    assert len(back) == len(sdk)
    for span in sdk:
        context = span.get_span_context()
        assert context is not None
        got = back[f"{context.span_id:016x}"]
        assert got.trace_id == f"{context.trace_id:032x}"
        assert got.parent_span_id == (f"{span.parent.span_id:016x}" if span.parent else "")
        assert (got.name, got.kind) == (span.name, span.kind.value + 1)  # OTLP counts from 1
        assert (got.start_ns, got.end_ns) == (span.start_time, span.end_time)
        assert got.attributes == {
            k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
        }
        assert [(e.name, e.time_ns, e.attributes) for e in got.events] == [
            (e.name, e.timestamp, dict(e.attributes or {})) for e in span.events
        ]
        assert got.status_code == span.status.status_code.value
        assert got.status_message == (span.status.description or "")
        assert got.resource == dict(span.resource.attributes)
        assert got.service == span.resource.attributes["service.name"]
        assert span.instrumentation_scope is not None
        assert (got.scope_name, got.scope_version) == ("netgap.tests", "1.2.3")


def test_the_sdk_http_exporter_in_and_api_v3_out(collector: Collector, http: httpx.Client) -> None:
    spans = sdk_trace()
    exporter = HttpSpanExporter(endpoint=collector.otlp_http_url)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert_same_spans(spans, stored_trace(http, collector, hex_id(spans[0])))


def test_the_sdk_http_exporter_gzipped(collector: Collector, http: httpx.Client) -> None:
    spans = sdk_trace()
    exporter = HttpSpanExporter(endpoint=collector.otlp_http_url, compression=Compression.Gzip)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert_same_spans(spans, stored_trace(http, collector, hex_id(spans[0])))


def test_the_sdk_grpc_exporter(collector: Collector, http: httpx.Client) -> None:
    spans = sdk_trace(service="apitier")
    exporter = GrpcSpanExporter(endpoint=collector.otlp_grpc_url, insecure=True, timeout=10)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert_same_spans(spans, stored_trace(http, collector, hex_id(spans[0])))


def test_otlp_json_in_with_hex_ids(collector: Collector, http: httpx.Client) -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "browser"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "fetch",
                                "kind": 3,
                                "startTimeUnixNano": str(NOW_NS),
                                "endTimeUnixNano": NOW_NS + 1000,  # a number works too
                                "attributes": [{"key": "n", "value": {"intValue": "5"}}],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    for encoding in ("", "gzip", "deflate"):
        body = json.dumps(document).encode()
        headers = dict(JSON)
        if encoding:
            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
            headers["content-encoding"] = encoding
        response = http.post(collector.otlp_http_url or "", content=body, headers=headers)
        assert (response.status_code, response.json()) == (200, {})
        assert response.headers["content-type"] == "application/json"
    [span] = spans_from_json(stored_trace(http, collector, trace_id).json())
    assert (span.span_id, span.name, span.kind, span.service) == (span_id, "fetch", 3, "js")
    assert (span.end_ns, span.attributes, span.status_code) == (NOW_NS + 1000, {"n": 5}, 1)
    assert collector.store.span_count() == 1


def test_protobuf_answer_is_an_empty_export_response(
    collector: Collector, http: httpx.Client
) -> None:
    request = ExportTraceServiceRequest(resource_spans=[_resource_spans([_pb_span()])])
    response = http.post(
        collector.otlp_http_url or "", content=request.SerializeToString(), headers=PROTOBUF
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert response.content == b""  # an ExportTraceServiceResponse with nothing set
    empty = http.post(collector.otlp_http_url or "", content=b"", headers=PROTOBUF)
    assert empty.status_code == 200


def test_a_resent_batch_is_not_stored_twice(collector: Collector, http: httpx.Client) -> None:
    spans = sdk_trace()
    exporter = HttpSpanExporter(endpoint=collector.otlp_http_url)
    for _ in range(3):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert collector.store.span_count() == 3
    assert len(spans_from_json(stored_trace(http, collector, hex_id(spans[0])).json())) == 3


def _pb_span(**fields: object) -> PbSpan:
    defaults: dict[str, object] = {
        "trace_id": bytes.fromhex(new_trace_id()),
        "span_id": bytes.fromhex(new_span_id()),
        "name": "GET /",
        "kind": PbSpan.SPAN_KIND_SERVER,
        "start_time_unix_nano": NOW_NS,
        "end_time_unix_nano": NOW_NS + 1000,
    }
    return PbSpan(**{**defaults, **fields})  # type: ignore[arg-type]


def _resource_spans(spans: list[PbSpan]) -> ResourceSpans:
    service = KeyValue(key="service.name", value=AnyValue(string_value="bad-client"))
    return ResourceSpans(
        resource=Resource(attributes=[service]), scope_spans=[ScopeSpans(spans=spans)]
    )


def _protobuf(*spans: PbSpan) -> bytes:
    request = ExportTraceServiceRequest(resource_spans=[_resource_spans(list(spans))])
    body: bytes = request.SerializeToString()
    return body


def _json_with(trace_id: str, span_id: str = "00f067aa0ba902b7") -> bytes:
    span = {"traceId": trace_id, "spanId": span_id, "name": "x", "startTimeUnixNano": "1"}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


_VALID = _protobuf(_pb_span(), _pb_span())
_BAD_PAYLOADS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "truncated protobuf": (400, PROTOBUF, _VALID[: len(_VALID) // 2]),
    "garbage protobuf": (400, PROTOBUF, b"\xff\xfe garbage \x00\x01"),
    "JSON sent as protobuf": (400, PROTOBUF, b'{"resourceSpans": []}'),
    "a 15-byte trace id": (400, PROTOBUF, _protobuf(_pb_span(), _pb_span(trace_id=b"x" * 15))),
    "a 9-byte span id": (400, PROTOBUF, _protobuf(_pb_span(span_id=b"y" * 9), _pb_span())),
    "an all-zero trace id": (400, PROTOBUF, _protobuf(_pb_span(), _pb_span(trace_id=bytes(16)))),
    "a 5-byte parent id": (400, PROTOBUF, _protobuf(_pb_span(parent_span_id=b"12345"))),
    "a time past 64 bits": (
        400,
        PROTOBUF,
        _protobuf(_pb_span(), _pb_span(end_time_unix_nano=2**64 - 1)),
    ),
    "wrong content type": (415, {"content-type": "text/plain"}, _VALID),
    "no content type": (415, {}, _VALID),
    "brotli": (415, {**PROTOBUF, "content-encoding": "br"}, _VALID),
    "invalid JSON": (400, JSON, b'{"resourceSpans": ['),
    "JSON that is not OTLP": (400, JSON, b'{"hello": "world"}'),
    "a JSON list": (400, JSON, b"[1, 2, 3]"),
    "JSON with NaN": (400, JSON, b'{"resourceSpans": NaN}'),
    "JSON of the wrong shape": (400, JSON, b'{"resourceSpans": [{"scopeSpans": {"a": 1}}]}'),
    "JSON with a short trace id": (400, JSON, _json_with("4bf92f3577b34da6a3ce929d0e0e47")),
    "JSON with a zero span id": (
        400,
        JSON,
        _json_with("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 16),
    ),
    "JSON with a lone surrogate": (
        400,
        JSON,
        _json_with("4bf92f3577b34da6a3ce929d0e0e4736").replace(b'"x"', b'"\\ud800"'),
    ),
    "not gzip": (400, {**PROTOBUF, "content-encoding": "gzip"}, _VALID),
    "truncated gzip": (400, {**PROTOBUF, "content-encoding": "gzip"}, gzip.compress(_VALID)[:-12]),
    "oversized": (413, PROTOBUF, bytes(70_000)),
    "a gzip bomb": (
        413,
        {**PROTOBUF, "content-encoding": "gzip"},
        gzip.compress(bytes(10_000_000)),
    ),
}


@pytest.fixture(scope="module")
def strict_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector for every bad request in turn (max body 64 KiB): each case must leave
    it as it found it."""
    db = tmp_path_factory.mktemp("strict") / "traces.db"
    with serving_in_thread(Collector(local_settings(db, max_body=64 * 1024))) as collector:
        earlier = sdk_trace()
        assert HttpSpanExporter(endpoint=collector.otlp_http_url).export(earlier) == (
            SpanExportResult.SUCCESS
        )
        yield collector


@pytest.mark.parametrize("case", list(_BAD_PAYLOADS))
def test_a_bad_request_is_refused_whole_and_harms_nothing(
    strict_collector: Collector, case: str, http: httpx.Client
) -> None:
    collector = strict_collector
    status, headers, body = _BAD_PAYLOADS[case]
    [earlier] = collector.store.recent_traces(1, service="webtier")
    before = stored_trace(http, collector, earlier.trace_id).content
    count = collector.store.span_count()
    response = http.post(collector.otlp_http_url or "", content=body, headers=headers)
    assert response.status_code == status, response.content
    message = _error_message(response)
    assert 0 < len(message) < 200
    assert "\n" not in message
    assert "Traceback" not in response.text
    assert collector.store.span_count() == count  # nothing of the bad request
    assert collector.store.services() == ["webtier"]
    assert stored_trace(http, collector, earlier.trace_id).content == before
    later = sdk_trace()  # and it keeps serving
    assert HttpSpanExporter(endpoint=collector.otlp_http_url).export(later) == (
        SpanExportResult.SUCCESS
    )
    assert collector.store.span_count() == count + 3


def _error_message(response: httpx.Response) -> str:
    """The OTLP/HTTP error body: a google.rpc.Status in the request's encoding."""
    content_type = response.headers["content-type"]
    if content_type == "application/x-protobuf":
        status = Status.FromString(response.content)
        assert status.code in (3, 8)  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED
        return str(status.message)
    if content_type == "application/json":
        body = response.json()
        assert set(body) == {"code", "message"}
        return str(body["message"])
    assert content_type.startswith("text/plain")
    return response.text


def test_other_methods_and_paths(collector: Collector, http: httpx.Client) -> None:
    assert http.get(collector.otlp_http_url or "").status_code == 405
    base = (collector.otlp_http_url or "").removesuffix("/v1/traces")
    assert http.post(f"{base}/v1/metrics", content=b"", headers=PROTOBUF).status_code == 404


def test_grpc_refuses_bad_ids_and_keeps_serving(collector: Collector) -> None:
    bad = ExportTraceServiceRequest(
        resource_spans=[_resource_spans([_pb_span(), _pb_span(span_id=b"short")])]
    )
    target = (collector.otlp_grpc_url or "").removeprefix("http://")
    with grpc.insecure_channel(target) as channel:
        export: Callable[..., object] = trace_service_pb2_grpc.TraceServiceStub(channel).Export  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            export(bad, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid ids" in (refused.value.details() or "")
        assert collector.store.span_count() == 0
        export(
            ExportTraceServiceRequest(resource_spans=[_resource_spans([_pb_span()])]), timeout=10
        )
    assert collector.store.span_count() == 1


def test_data_survives_a_restart(start_collector: StartCollector, http: httpx.Client) -> None:
    spans = sdk_trace()
    with start_collector() as collector:
        assert HttpSpanExporter(endpoint=collector.otlp_http_url).export(spans) == (
            SpanExportResult.SUCCESS
        )
        before = stored_trace(http, collector, hex_id(spans[0])).content
    with start_collector() as collector:
        assert stored_trace(http, collector, hex_id(spans[0])).content == before
        assert collector.store.span_count() == 3


def test_old_traces_expire_while_serving(
    start_collector: StartCollector, http: httpx.Client
) -> None:
    with start_collector(max_age_s=0.3) as collector:
        spans = sdk_trace()
        assert HttpSpanExporter(endpoint=collector.otlp_http_url).export(spans) == (
            SpanExportResult.SUCCESS
        )
        assert stored_trace(http, collector, hex_id(spans[0])).status_code == 200
        deadline = time.monotonic() + 5
        while collector.store.span_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_trace(http, collector, hex_id(spans[0])).status_code == 404


def test_span_limit_while_serving(start_collector: StartCollector, http: httpx.Client) -> None:
    with start_collector(max_spans=7) as collector:
        exporter = HttpSpanExporter(endpoint=collector.otlp_http_url)
        traces = [sdk_trace() for _ in range(3)]
        for spans in traces:
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        assert collector.store.span_count() == 6
        assert stored_trace(http, collector, hex_id(traces[0][0])).status_code == 404
        assert stored_trace(http, collector, hex_id(traces[2][0])).status_code == 200
