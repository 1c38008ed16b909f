"""A header value contrib's ASGI middleware cannot decode (it uses the unicode_escape codec) is
left out before the middleware sees it: the request is answered, and traced as a new trace,
instead of ending in a 500 from inside the instrumentation."""

import socket
from pathlib import Path

import pytest

from tests.harness import SERVER, OtlpReceiver, api_tier, running

UNDECODABLE = [
    (b"traceparent", b"\x80\\"),  # found by the fuzz test: a trailing backslash
    (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01\\x"),
    (b"user-agent", b"agent\\N{nothing}"),
]


def raw_get(port: int, header: tuple[bytes, bytes]) -> bytes:
    name, value = header
    request = b"GET / HTTP/1.1\r\nHost: api\r\n" + name + b": " + value + b"\r\n"
    request += b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("header", UNDECODABLE, ids=["traceparent", "escape", "user-agent"])
def test_an_undecodable_header_is_left_out_not_a_500(
    tmp_path: Path, receiver: OtlpReceiver, header: tuple[bytes, bytes]
) -> None:
    with pytest.raises(UnicodeDecodeError):
        header[1].decode("unicode_escape")  # what contrib would do with it
    with running(api_tier(tmp_path, receiver)) as api:
        answer = raw_get(api.port, header)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:300]
        trace_id = next(
            line.split(b"-")[1].decode()
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"traceresponse:")
        )
        spans = receiver.wait_for_trace(trace_id, 3)
    server = next(s for s in spans if s.kind == SERVER)
    assert server.parent_span_id == ""  # a new trace: the malformed context was ignored
