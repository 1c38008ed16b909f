"""One request to the web tier, end to end: the trace, the headers, the page, the logs."""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.harness import (
    CLIENT,
    INTERNAL,
    SERVER,
    OtlpReceiver,
    Span,
    Tier,
    api_tier,
    running,
    web_tier,
)
from tierkit.server_timing import server_timing_durations

QUERY_DELAY_MS = 2.0


@dataclass
class Stack:
    receiver: OtlpReceiver
    api: Tier
    web: Tier


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logdir = tmp_path_factory.mktemp("stack")
    receiver = OtlpReceiver()
    api = api_tier(logdir, receiver, QUERY_DELAY_MS=str(QUERY_DELAY_MS))
    with running(api):
        web = web_tier(logdir, receiver, f"{api.url}/", JAEGER_UI_URL="http://jaeger.test:16686/")
        with running(web):
            yield Stack(receiver, api, web)
    receiver.close()


def trace_id_of(response: httpx.Response) -> str:
    version, trace_id, span_id, _flags = response.headers["traceresponse"].split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    return trace_id


def one(spans: list[Span], **match: object) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"{match}: {found}"
    return found[0]


def test_page_shows_the_api_body_and_a_link_to_the_trace(stack: Stack) -> None:
    response = httpx.get(f"{stack.web.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Hello, from the API tier!" in response.text
    trace_id = trace_id_of(response)
    assert f'href="http://jaeger.test:16686/trace/{trace_id}"' in response.text


def test_one_request_is_one_trace_of_five_spans(stack: Stack) -> None:
    response = httpx.get(f"{stack.web.url}/")
    trace_id = trace_id_of(response)
    spans = stack.receiver.wait_for_trace(trace_id, 5)
    assert len(spans) == 5, spans

    web_server = one(spans, service="webtier", kind=SERVER)
    outbound = one(spans, service="webtier", kind=CLIENT)
    api_server = one(spans, service="apitier", kind=SERVER)
    handler = one(spans, service="apitier", name="api-handler")
    query = one(spans, service="apitier", name="fast-query")

    assert web_server.name == "GET /"
    assert api_server.name == "GET /"
    assert web_server.parent_span_id == ""
    assert outbound.parent_span_id == web_server.span_id
    assert api_server.parent_span_id == outbound.span_id
    assert handler.parent_span_id == api_server.span_id
    assert handler.kind == INTERNAL
    assert query.parent_span_id == handler.span_id
    assert query.kind == INTERNAL
    assert query.duration_ms >= QUERY_DELAY_MS
    # Stable HTTP semantic conventions, not the old names.
    assert web_server.attributes["http.request.method"] == "GET"
    assert outbound.attributes["http.response.status_code"] == 200
    assert outbound.attributes["peer.service"] == "apitier"  # API_SERVICE_NAME
    assert "http.method" not in outbound.attributes


def test_client_span_records_connection_phases(stack: Stack) -> None:
    for _ in range(2):  # the second request reuses the pooled connection
        response = httpx.get(f"{stack.web.url}/")
    spans = stack.receiver.wait_for_trace(trace_id_of(response), 5)
    outbound = one(spans, kind=CLIENT)
    api_server = one(spans, service="apitier", kind=SERVER)
    # Causality (same host clock here). Not the end: the API's span ends after its last byte
    # is sent, which may be after the client has read it.
    assert outbound.start_ns <= api_server.start_ns
    assert outbound.attributes["netgap.connection.reused"] is True
    assert outbound.events == ["request sent", "first byte", "body done"]


def test_server_timing_adds_up_to_the_server_span(stack: Stack) -> None:
    """web + net + api is the SERVER span's time up to the response headers: it cannot exceed
    the span, and it already covers the whole outbound call. Bounds by causality, not by how
    busy the machine is."""
    httpx.get(f"{stack.web.url}/")  # warm
    rounding_ms = 3 * 0.0005  # three values sent with 3 decimals
    for _ in range(5):
        response = httpx.get(f"{stack.web.url}/")
        timing = server_timing_durations(response.headers["server-timing"])
        assert set(timing) == {"web", "net", "api"}
        assert all(ms > 0 for ms in timing.values())
        assert timing["api"] >= QUERY_DELAY_MS
        spans = stack.receiver.wait_for_trace(trace_id_of(response), 5)
        web_server = one(spans, service="webtier", kind=SERVER)
        outbound = one(spans, kind=CLIENT)
        total = sum(timing.values())
        assert total <= web_server.duration_ms + rounding_ms
        assert total >= (outbound.end_ns - web_server.start_ns) / 1e6 - rounding_ms


def test_healthz_is_not_traced(stack: Stack) -> None:
    before = len(stack.receiver.snapshot())
    for tier in (stack.web, stack.api):
        response = httpx.get(f"{tier.url}/healthz")
        assert response.status_code == 200
        assert "traceresponse" not in response.headers
    # A traced request after them: once its spans are in, nothing else came with them.
    trace_id = trace_id_of(httpx.get(f"{stack.web.url}/"))
    spans = stack.receiver.wait_for_trace(trace_id, 5)
    new = stack.receiver.snapshot()[before:]
    assert not [s for s in new if s.trace_id != trace_id and "healthz" in s.name], spans


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("POST", "/", 405), ("DELETE", "/healthz", 405)],
)
def test_unknown_path_and_wrong_method(stack: Stack, method: str, path: str, status: int) -> None:
    for tier in (stack.web, stack.api):
        response = httpx.request(method, f"{tier.url}{path}")
        assert response.status_code == status
        assert len(response.content) < 200
        assert "Traceback" not in response.text


def test_every_request_is_one_json_log_line_with_its_trace(stack: Stack) -> None:
    response = httpx.get(f"{stack.web.url}/", params={"probe": "logline"})
    trace_id = trace_id_of(response)
    stack.receiver.wait_for_trace(trace_id, 5)  # both tiers have finished the request
    for tier in (stack.web, stack.api):
        lines = [line for line in tier.request_logs() if line["trace_id"] == trace_id]
        assert len(lines) == 1, tier.logs()
        line = lines[0]
        assert line["method"] == "GET"
        assert line["path"] == "/"
        assert line["status"] == 200
        assert line["duration_ms"] > 0
        assert len(line["span_id"]) == 16


def test_each_tier_logs_its_telemetry_setup_once(stack: Stack) -> None:
    for tier in (stack.web, stack.api):
        lines = [line for line in tier.log_lines() if line["msg"] == "telemetry"]
        assert len(lines) == 1
        assert lines[0]["exporter"] == "otlp"
        assert lines[0]["endpoint"] == f"{stack.receiver.endpoint}/v1/traces"
        assert lines[0]["sampler"].startswith("ParentBased")
        assert lines[0]["service"] == tier.module
