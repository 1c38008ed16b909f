"""The API client in-process, against real sockets, with a real SDK tracer provider."""

import asyncio
import socket
import threading

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.servers import http_response, raw_http_server
from tierkit.telemetry import Telemetry, TelemetrySettings
from webtier.api_client import ApiBadStatus, ApiClient, ApiReply, ApiTimeout, ApiUnreachable
from webtier.settings import ApiSettings

BODY_DELAY_S = 0.3


def reused(span: ReadableSpan) -> object:
    return (span.attributes or {}).get("netgap.connection.reused")


def traced(
    url: str, timeout_s: float = 5.0, mode: str = "standard"
) -> tuple[ApiClient, InMemorySpanExporter]:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = Telemetry(TelemetrySettings(default_service="test", mode=mode), provider)
    return ApiClient(ApiSettings(url=url, timeout_s=timeout_s), telemetry), memory


async def fetch_twice(client: ApiClient) -> list[ApiReply]:
    try:
        return [await client.fetch(), await client.fetch()]
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["standard", "lean"])
def test_client_span_covers_a_slow_body(mode: str) -> None:
    # Headers at once, the last bytes of the body 300 ms later: the contrib span alone would
    # end at the headers (contrib #2304) and misfile the 300 ms as web time.
    body = b"Hello, from the API tier!"
    script = http_response("200 OK", body, "server-timing: app;dur=1.5\r\n")
    with raw_http_server(script, pause_after=len(script) - 4, pause_s=BODY_DELAY_S) as url:
        client, memory = traced(f"{url}/", mode=mode)
        replies = asyncio.run(fetch_twice(client))
    assert [r.body for r in replies] == [body.decode()] * 2
    assert all(r.exchange.api_s == 0.0015 for r in replies)
    assert all(r.exchange.seconds >= BODY_DELAY_S for r in replies)
    spans = [s for s in memory.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(spans) == 2
    for span in spans:
        assert span.end_time is not None
        assert span.start_time is not None
        assert (span.end_time - span.start_time) / 1e9 >= BODY_DELAY_S
        assert [e.name for e in span.events][-1] == "body done"
        assert span.end_time >= span.events[-1].timestamp
        if mode == "lean":  # it ends as the last byte is read: our bookkeeping is not remote
            assert span.end_time == span.events[-1].timestamp
        scope = span.instrumentation_scope
        assert scope is not None
        expected = {"standard": "opentelemetry.instrumentation.httpx", "lean": "tierkit.lean"}
        assert scope.name == expected[mode]
    # The server closes each connection: both exchanges dialled a new one.
    assert [reused(s) for s in spans] == [False, False]
    assert [e.name for e in spans[0].events] == [
        "connect",
        "request sent",
        "first byte",
        "body done",
    ]


def test_a_kept_alive_connection_is_reused() -> None:
    script = http_response("200 OK", b"hi").replace(b"connection: close\r\n", b"")
    with raw_http_server(script, keep_alive=True) as url:
        client, memory = traced(f"{url}/")
        asyncio.run(fetch_twice(client))
    spans = [s for s in memory.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [reused(s) for s in spans] == [False, True]


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (http_response("500 Internal Server Error", b"x"), ApiBadStatus),
        (http_response("404 Not Found", b"x"), ApiBadStatus),
        (b"garbage that is not HTTP\r\n\r\n", ApiUnreachable),
        (b"", ApiTimeout),
    ],
)
def test_failures_map_to_api_errors(script: bytes, error: type[Exception]) -> None:
    with raw_http_server(script) as url:
        client, memory = traced(f"{url}/", timeout_s=0.3)
        with pytest.raises(error):
            asyncio.run(fetch_twice(client))
    client_spans = [s for s in memory.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(client_spans) == 1


def test_an_api_that_hangs_up_or_is_not_there_is_unreachable_not_slow() -> None:
    # httpx-aiohttp reports both as httpx.ConnectTimeout; the web tier must answer 502 for
    # them, and 504 only for an API that is slow (above).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"

    def hang_up() -> None:
        for _ in range(2):  # bounded: the client's one try (and aiohttp's retry, if any)
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    client, _ = traced(url, timeout_s=2)
    with pytest.raises(ApiUnreachable, match="RemoteProtocolError"):
        asyncio.run(fetch_twice(client))
    listener.close()
    thread.join(5)
    client, _ = traced(url, timeout_s=2)  # nothing listens there now
    with pytest.raises(ApiUnreachable, match="ConnectError"):
        asyncio.run(fetch_twice(client))
