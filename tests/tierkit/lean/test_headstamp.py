"""tierkit.lean.headstamp under a real tier in lean mode: the SERVER span starts when the
request's head was read, so a request that waits inside the server (here: pipelined behind a
slow one on its connection) is charged to the server, not to the time between the services."""

import socket
import time
from pathlib import Path

from tests.harness import SERVER, OtlpReceiver, api_tier, running

DELAY_MS = 150.0


def request(trace_id: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: api\r\ntraceparent: 00-{trace_id}-{'1' * 16}-01\r\n\r\n"
    ).encode()


def read_responses(sock: socket.socket, count: int, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    got = b""
    deadline = time.monotonic() + timeout_s
    while got.count(b"Hello, from the API tier!") < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_a_pipelined_request_is_served_time_from_the_moment_its_head_was_read(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    first, second = "a" * 32, "b" * 32
    with running(
        api_tier(tmp_path, receiver, QUERY_DELAY_MS=str(DELAY_MS), TRACING_MODE="lean")
    ) as api:
        host, port = api.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request(first) + request(second))  # one write: both heads read at once
            answers = read_responses(sock, 2)
    assert answers.count(b"HTTP/1.1 200 OK") == 2, answers
    served = {
        trace_id: next(s for s in receiver.wait_for_trace(trace_id, 3) if s.kind == SERVER)
        for trace_id in (first, second)
    }
    # The second waited in uvicorn's pipeline for the first to finish, then ran its own query.
    # Started when it was dispatched, its span would hold one query only (~DELAY_MS).
    assert served[first].duration_ms >= DELAY_MS
    assert served[second].duration_ms >= 2 * DELAY_MS
    assert abs(served[second].start_ns - served[first].start_ns) < DELAY_MS * 1e6 / 2
