"""Keep-alive between the tiers (issue 19, item 2): the API tier closes idle connections after
KEEPALIVE_TIMEOUT_S, the web tier lets its own go after API_KEEPALIVE_EXPIRY_S (below it by
default, with a warning at start when set the wrong way round), and a page whose call met a
connection the API closed unanswered is answered 200 after one retry on a new connection, the
retry on its CLIENT span. Real tier processes on loopback; the API stand-in parses with h11."""

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.h11_server import h11_server
from tests.harness import CLIENT, ROOT, OtlpReceiver, api_tier, running, tier_env, web_tier

EXPIRY_WARNING = "API_KEEPALIVE_EXPIRY_S"


@pytest.mark.parametrize(
    ("module", "env", "message"),
    [
        ("apitier", {"KEEPALIVE_TIMEOUT_S": "0"}, "KEEPALIVE_TIMEOUT_S must be from 0.1"),
        ("apitier", {"KEEPALIVE_TIMEOUT_S": "soon"}, "KEEPALIVE_TIMEOUT_S must be a number"),
        ("webtier", {"KEEPALIVE_TIMEOUT_S": "-1"}, "KEEPALIVE_TIMEOUT_S must be from 0.1"),
        ("webtier", {"API_KEEPALIVE_EXPIRY_S": "-1"}, "API_KEEPALIVE_EXPIRY_S must be from 0"),
        ("webtier", {"API_KEEPALIVE_TIMEOUT_S": "nan"}, "API_KEEPALIVE_TIMEOUT_S must be from"),
    ],
)
def test_bad_keepalive_settings_exit_2_naming_the_variable(
    module: str, env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=tier_env(None, **env),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{module}: {message}"), result.stderr
    assert "Traceback" not in result.stderr


def idle_close_after(url: str, wait_s: float) -> bool:
    """One request on a raw keep-alive connection, then whether the server closed it within
    `wait_s` of the answer."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        sock.settimeout(wait_s)
        try:
            return sock.recv(4096) == b""
        except TimeoutError:
            return False


def test_the_api_tier_closes_idle_connections_after_its_keepalive_timeout(
    tmp_path: Path,
) -> None:
    with running(api_tier(tmp_path, None, KEEPALIVE_TIMEOUT_S="0.3")) as short:
        assert idle_close_after(short.url, 5.0)
    with running(api_tier(tmp_path, None)) as default:  # 5 s
        assert not idle_close_after(default.url, 1.0)


def warnings_of(tier_logs: list[dict[str, object]]) -> list[str]:
    return [
        str(line["msg"])
        for line in tier_logs
        if line["level"] == "warning" and EXPIRY_WARNING in str(line["msg"])
    ]


def test_a_pool_expiry_not_below_the_apis_keepalive_timeout_is_warned_about_at_start(
    tmp_path: Path,
) -> None:
    api_url = "http://127.0.0.1:9/"  # never called
    with running(web_tier(tmp_path, None, api_url)) as default:
        assert warnings_of(default.log_lines()) == []
    with running(web_tier(tmp_path, None, api_url, API_KEEPALIVE_EXPIRY_S="5")) as same:
        [warning] = warnings_of(same.log_lines())
        assert "(5 s) is not below" in warning
        assert "API_KEEPALIVE_TIMEOUT_S, 5 s" in warning
    # told the API keeps them longer, the same expiry is fine; told shorter, a lower one is not
    longer = web_tier(
        tmp_path, None, api_url, API_KEEPALIVE_EXPIRY_S="5", API_KEEPALIVE_TIMEOUT_S="75"
    )
    with running(longer):
        assert warnings_of(longer.log_lines()) == []
    shorter = web_tier(tmp_path, None, api_url, API_KEEPALIVE_TIMEOUT_S="1")
    with running(shorter):
        assert len(warnings_of(shorter.log_lines())) == 1


@pytest.mark.parametrize("mode", ["standard", "lean"])
def test_a_call_the_api_dropped_on_a_kept_alive_connection_is_retried_on_a_new_one(
    tmp_path: Path, receiver: OtlpReceiver, mode: str
) -> None:
    """The stand-in answers the first request on each connection and closes the connection at
    the next one without a word, as a server timing out an idle connection while a request is
    on its way does. From the second page on, each page's call meets such a connection, and is
    answered on a new one after one retry, which its CLIENT span shows; no page fails."""
    pages = 3
    with (
        h11_server(answer_on_each_connection=1) as (url, received),
        running(web_tier(tmp_path, receiver, f"{url}/", TRACING_MODE=mode)) as web,
    ):
        with httpx.Client(timeout=10) as browser:
            responses = [browser.get(f"{web.url}/") for _ in range(pages)]
        traces = [r.headers["traceresponse"].split("-")[1] for r in responses]
        clients = [
            next(s for s in receiver.wait_for_trace(trace_id, 2) if s.kind == CLIENT)
            for trace_id in traces
        ]
    assert [r.status_code for r in responses] == [200] * pages
    logged = {line["trace_id"]: line for line in web.request_logs()}
    assert [logged[trace_id]["status"] for trace_id in traces] == [200] * pages
    # the log line says which call was sent twice (netgap scenario counts them)
    assert [logged[trace_id].get("retried") for trace_id in traces] == [None] + [True] * 2
    assert len(received.connections) == pages
    assert len(received.requests) == 2 * pages - 1  # each but the first sent twice
    assert ["retry" in client.events for client in clients] == [False] + [True] * (pages - 1)
    # each answered on a new connection, and the span is no error
    assert [client.attributes["netgap.connection.reused"] for client in clients] == [False] * 3
    assert [client.status_code for client in clients] == [0] * pages


@pytest.mark.parametrize("mode", ["standard", "lean"])
def test_a_call_whose_retry_is_dropped_too_is_a_502_whose_span_shows_both_tries(
    tmp_path: Path, receiver: OtlpReceiver, mode: str
) -> None:
    """The stand-in drops every request unanswered: the call is sent twice, on two connections,
    then answered 502, and its CLIENT span has the steps it took, the retry among them."""
    with (
        h11_server(answer_on_each_connection=0) as (url, received),
        running(web_tier(tmp_path, receiver, f"{url}/", TRACING_MODE=mode)) as web,
    ):
        response = httpx.get(f"{web.url}/", timeout=10)
        trace_id = response.headers["traceresponse"].split("-")[1]
        spans = receiver.wait_for_trace(trace_id, 2)
    assert response.status_code == 502
    assert len(received.connections) == 2
    assert len(received.requests) == 2
    [client] = [s for s in spans if s.kind == CLIENT]
    # the retry's own connection and its sending (the first try's are not kept)
    assert [e for e in client.events if e != "exception"] == [
        "connect",
        "retry",
        "request sent",
    ], client.events
    assert client.status_code == 2
