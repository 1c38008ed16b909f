"""When the API tier fails, the web tier answers fast with a short page, marks its span and
keeps serving. Bad trace headers never hurt."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import CLIENT, SERVER, OtlpReceiver, Tier, api_tier, free_port, running, web_tier
from tests.servers import http_response, raw_http_server


def assert_short_error_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    assert len(response.content) < 4000


def trace_of(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def error_server_span(receiver: OtlpReceiver, response: httpx.Response) -> dict[str, object]:
    spans = receiver.wait_for_trace(trace_of(response), 2)
    server = next(s for s in spans if s.kind == SERVER)
    return {"status": server.status_code, "events": server.events}


def test_api_stopped_gives_502_then_recovers_without_restart(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    api_port = free_port()
    web = web_tier(tmp_path, receiver, f"http://127.0.0.1:{api_port}/")
    with running(web):
        started = time.monotonic()
        response = httpx.get(f"{web.url}/")
        assert time.monotonic() - started < 2.0  # at once, not after the 5 s timeout
        assert_short_error_page(response, 502)
        assert "unreachable" in response.text
        assert error_server_span(receiver, response) == {"status": 2, "events": ["exception"]}
        # The call names its callee's service, so the breakdown counts it on webtier->apitier
        # (an unpaired call) and not on an edge named by the address.
        spans = receiver.wait_for_trace(trace_of(response), 2)
        assert [s.attributes.get("peer.service") for s in spans if s.kind == CLIENT] == ["apitier"]
        # Expected failures log one line, with the reason, and no traceback.
        lines = [line for line in web.request_logs() if line["trace_id"] == trace_of(response)]
        assert len(lines) == 1
        assert lines[0]["status"] == 502
        assert "unreachable" in lines[0]["error"]
        assert "Traceback" not in web.logs()

        with running(api_tier(tmp_path, receiver, PORT=str(api_port))):
            response = httpx.get(f"{web.url}/")
            assert response.status_code == 200
            assert "Hello, from the API tier!" in response.text


def test_api_slower_than_the_timeout_gives_504(tmp_path: Path, receiver: OtlpReceiver) -> None:
    with raw_http_server(b"") as stalled:  # accepts, never answers
        web = web_tier(tmp_path, receiver, f"{stalled}/", API_TIMEOUT_S="0.3")
        with running(web):
            started = time.monotonic()
            response = httpx.get(f"{web.url}/")
            assert 0.3 <= time.monotonic() - started < 3.0
            assert_short_error_page(response, 504)
            assert error_server_span(receiver, response)["status"] == 2
            assert httpx.get(f"{web.url}/healthz").status_code == 200


def test_body_trickling_past_the_timeout_gives_504(tmp_path: Path, receiver: OtlpReceiver) -> None:
    # Headers at once, body late: httpx's per-read timeout alone would not catch a slow drip.
    script = http_response("200 OK", b"Hello, from the API tier!")
    with raw_http_server(script, pause_after=len(script) - 5, pause_s=2.0) as slow:
        web = web_tier(tmp_path, receiver, f"{slow}/", API_TIMEOUT_S="0.5")
        with running(web):
            assert_short_error_page(httpx.get(f"{web.url}/"), 504)


@pytest.mark.parametrize("status", ["500 Internal Server Error", "503 Service Unavailable"])
def test_api_5xx_gives_502(tmp_path: Path, receiver: OtlpReceiver, status: str) -> None:
    with raw_http_server(http_response(status, b"boom\nTraceback (most recent call last):")) as bad:
        web = web_tier(tmp_path, receiver, f"{bad}/")
        with running(web):
            response = httpx.get(f"{web.url}/")
            assert_short_error_page(response, 502)
            assert "boom" not in response.text  # the API's body is not passed through
            assert f"answered {status[:3]}" in response.text
            assert httpx.get(f"{web.url}/healthz").status_code == 200


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tier, OtlpReceiver]]:
    logdir = tmp_path_factory.mktemp("bad-headers")
    receiver = OtlpReceiver()
    api = api_tier(logdir, receiver)
    with running(api), running(web_tier(logdir, receiver, f"{api.url}/")) as web:
        yield web, receiver
    receiver.close()


GIVEN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BAD_TRACEPARENTS = {
    "empty": "",
    "overlong": f"00-{GIVEN_TRACE}-00f067aa0ba902b7-01-" + "a" * 4000,
    "bad version": f"ff-{GIVEN_TRACE}-00f067aa0ba902b7-01",
    "non-hex": "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
    "all-zero trace id": "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "all-zero span id": f"00-{GIVEN_TRACE}-0000000000000000-01",
    "too few fields": f"00-{GIVEN_TRACE}-01",
    "upper case": f"00-{GIVEN_TRACE.upper()}-00F067AA0BA902B7-01",
}


@pytest.mark.parametrize("value", BAD_TRACEPARENTS.values(), ids=BAD_TRACEPARENTS.keys())
def test_malformed_traceparent_starts_a_new_trace(
    web: tuple[Tier, OtlpReceiver], value: str
) -> None:
    tier, receiver = web
    response = httpx.get(f"{tier.url}/", headers={"traceparent": value})
    assert response.status_code == 200
    trace_id = trace_of(response)
    assert trace_id not in (GIVEN_TRACE, "0" * 32)
    spans = receiver.wait_for_trace(trace_id, 5)
    root = next(s for s in spans if s.kind == SERVER and s.service == "webtier")
    assert root.parent_span_id == ""  # a new trace, not a child of the bad header
    assert httpx.get(f"{tier.url}/healthz").status_code == 200


BAD_TRACESTATES = {
    "empty": "",
    "overlong": "vendor=" + "x" * 5000,
    "too many members": ",".join(f"k{i}=v" for i in range(64)),
    "garbage": "=,=,;;;~ ,,",
    "invalid key": "UPPER=1,@@=2",
}


@pytest.mark.parametrize("value", BAD_TRACESTATES.values(), ids=BAD_TRACESTATES.keys())
def test_malformed_tracestate_is_ignored(web: tuple[Tier, OtlpReceiver], value: str) -> None:
    tier, _ = web
    good_parent = f"00-{GIVEN_TRACE}-00f067aa0ba902b7-01"
    response = httpx.get(f"{tier.url}/", headers={"traceparent": good_parent, "tracestate": value})
    assert response.status_code == 200
    assert "Hello, from the API tier!" in response.text
