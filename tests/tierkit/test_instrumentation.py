"""The default (standard) tracing mode on real tiers: contrib's instrumentation makes the
SERVER and CLIENT spans, and our additions ride on them; and the same trace under zero-code
instrumentation (`opentelemetry-instrument`, as the OpenTelemetry Operator injects it)."""

import sys
from pathlib import Path

import httpx
import pytest

from netgap import model
from netgap.breakdown import break_down
from tests.harness import (
    CLIENT,
    INTERNAL,
    SERVER,
    OtlpReceiver,
    Span,
    api_tier,
    one_trace,
    running,
    web_tier,
)

INSTRUMENT = str(Path(sys.executable).parent / "opentelemetry-instrument")
FASTAPI_SCOPE = "opentelemetry.instrumentation.fastapi"
HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"
# contrib's ASGI spans for each receive/send message, which zero-code instrumentation adds with
# its defaults (no public setting removes them there)
ASGI_MESSAGES = {"GET / http send", "GET / http receive", "GET http send", "GET http receive"}


# What a user sets for zero-code instrumentation against an OTLP/HTTP backend: the distro's
# default protocol is gRPC, and it would export metrics and logs too.
ZERO_CODE = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def core(spans: list[Span]) -> list[tuple[str, str, int]]:
    return sorted((s.service, s.name, s.kind) for s in spans if s.name not in ASGI_MESSAGES)


EXPECTED = [
    ("apitier", "GET /", SERVER),
    ("apitier", "api-handler", INTERNAL),
    ("apitier", "fast-query", INTERNAL),
    ("webtier", "GET", CLIENT),
    ("webtier", "GET /", SERVER),
]


def assert_our_additions(spans: list[Span]) -> None:
    client = next(s for s in spans if s.kind == CLIENT)
    api_server = next(s for s in spans if s.kind == SERVER and s.service == "apitier")
    assert client.events == ["connect", "request sent", "first byte", "body done"]
    assert client.attributes["peer.service"] == "apitier"
    assert client.attributes["netgap.remote_seconds"] >= 0
    assert client.attributes["netgap.connection.reused"] is False
    assert client.attributes["netgap.tcp.srtt_us"] > 0
    assert api_server.attributes["netgap.tcp.srtt_us"] > 0
    assert api_server.attributes["http.route"] == "/"


def test_default_spans_are_contribs_with_ours_on_them(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    spans, response = one_trace(tmp_path, receiver)
    assert core(spans) == EXPECTED
    assert len(spans) == 5  # nothing else: no ASGI receive/send spans
    scopes = {(s.service, s.kind): s.scope for s in spans if s.kind in (SERVER, CLIENT)}
    assert scopes == {
        ("webtier", SERVER): FASTAPI_SCOPE,
        ("apitier", SERVER): FASTAPI_SCOPE,
        ("webtier", CLIENT): HTTPX_SCOPE,
    }
    assert_our_additions(spans)
    # stable HTTP semantic conventions by default
    assert all("http.request.method" in s.attributes for s in spans if s.kind != INTERNAL)
    assert "server-timing" in response.headers


@pytest.mark.parametrize("distro", [True, False], ids=["with-distro", "without-distro"])
def test_zero_code_instrumentation_gives_the_same_trace(
    tmp_path: Path, receiver: OtlpReceiver, distro: bool
) -> None:
    # Without the distro's configurator, opentelemetry-instrument sets up no SDK and the tiers
    # make their own provider; with it, they reuse the one it made.
    env = {} if distro else {"OTEL_PYTHON_CONFIGURATOR": "none-installed"}
    spans, _ = one_trace(tmp_path, receiver, [INSTRUMENT], **ZERO_CODE, **env)
    assert core(spans) == EXPECTED  # one SERVER per tier, one CLIENT, the two INTERNAL
    extra = {s.name for s in spans} - {name for _, name, _ in EXPECTED}
    assert extra <= ASGI_MESSAGES
    assert_our_additions(spans)
    server_scopes = {s.scope for s in spans if s.kind == SERVER}
    assert server_scopes == {FASTAPI_SCOPE}


def as_model(spans: list[Span]) -> list[model.Span]:
    return [
        model.Span(
            trace_id=s.trace_id,
            span_id=s.span_id,
            parent_span_id=s.parent_span_id,
            name=s.name,
            kind=s.kind,
            start_ns=s.start_ns,
            end_ns=s.end_ns,
            service=s.service,
            attributes=s.attributes,
            events=tuple(model.Event(name, ns) for name, ns in s.event_ns.items()),
        )
        for s in spans
    ]


def shape(spans: list[Span]) -> tuple[object, ...]:
    """What the breakdown makes of a trace, without its times."""
    found = break_down(as_model(spans))
    assert found is not None
    return (
        found.order,
        found.calls,
        found.unpaired,
        {edge: sorted(phases) for edge, phases in found.phases_ns.items()},
        sorted(found.tcp),
        sorted(found.tcp_callee),
        # A server ends its span after writing its last byte, so on a busy machine its client
        # can read the answer and end first: that warning is about timing, not shape.
        [w for w in found.warnings if "outlasts its client span" not in w],
    )


def test_zero_code_breakdown_matches_the_default_modes(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "zero").mkdir()
    default, _ = one_trace(tmp_path / "default", receiver)
    zero, _ = one_trace(tmp_path / "zero", receiver, [INSTRUMENT], **ZERO_CODE)
    assert shape(zero) == shape(default)
    assert shape(default)[0] == [
        "webtier self",
        "webtier->apitier remote",
        "apitier self",
    ]


def test_the_users_otel_variables_work_as_contrib_documents_them(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    # The user's own semconv choice wins over our default (here: old and new names both),
    # their excluded URLs add to ours, and url.full is redacted as contrib redacts it.
    env = {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "/private",
    }
    with (
        running(api_tier(tmp_path, receiver, **env)) as api,
        running(web_tier(tmp_path, receiver, f"{api.url}/?sig=secret-value", **env)) as web,
    ):
        traced = httpx.get(f"{web.url}/", timeout=10)
        hidden = httpx.get(f"{api.url}/private", timeout=10)
        health = httpx.get(f"{web.url}/healthz", timeout=10)
        trace_id = traced.headers["traceresponse"].split("-")[1]
        receiver.wait_for_trace(trace_id, 5)
    assert hidden.status_code == 404
    assert health.status_code == 200
    assert "traceresponse" not in hidden.headers
    assert "traceresponse" not in health.headers
    spans = receiver.snapshot()
    assert {s.trace_id for s in spans} == {trace_id}  # nothing from /private or /healthz
    server = next(s for s in spans if s.kind == SERVER and s.service == "webtier")
    assert server.attributes["http.method"] == "GET"  # the old name, beside
    assert server.attributes["http.request.method"] == "GET"  # the stable one
    client = next(s for s in spans if s.kind == CLIENT)
    assert "secret-value" not in client.attributes["url.full"]
    assert "sig=REDACTED" in client.attributes["url.full"]
