"""Hostile HTTP/1.1 request heads for fuzzing a tier over a real socket, as raw bytes.

httpx refuses to send invalid header bytes, so these requests go out through a plain socket:
trace headers (`traceparent`, `tracestate`, `baggage`) with anything in them, odd or missing
`Host` headers, very long paths and query strings, bytes that are not UTF-8, and thousands of
headers. What is checked is only what a client sees: the status, the body, and that the
server still answers a normal request afterwards.
"""

import contextlib
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.harness import Tier

# Bounded for `make test` on two cores; the examples are random, so every run tries new ones.
# No example database in the work tree: a failure prints the example and a reproduce blob.
_BASE = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def fuzz(max_examples: int) -> settings:
    return settings(_BASE, max_examples=max_examples)


TRACEBACK = re.compile(rb"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
TRACERESPONSE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
EXCHANGE_TIMEOUT_S = 15.0

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class RawResponse:
    status: int | None  # None: the server closed without answering
    head: bytes
    body: bytes

    def header(self, name: str) -> list[str]:
        found = []
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.encode():
                found.append(value.strip().decode("latin-1"))
        return found


def request_bytes(target: bytes, headers: Headers, host: bytes | None = b"127.0.0.1") -> bytes:
    """A GET with `Connection: close` last, so that the server closes after its answer."""
    lines = [b"GET " + target + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def exchange(port: int, request: bytes, timeout_s: float = EXCHANGE_TIMEOUT_S) -> RawResponse:
    """Sends `request` and reads until the server closes the connection."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # It may answer (400) and close before reading a huge head: then read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    data = b"".join(chunks)
    if not data:
        return RawResponse(None, b"", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})[ \r]", head + b"\r")
    assert match, f"not an HTTP response: {data[:200]!r}"
    return RawResponse(int(match[1]), head, body)


def assert_survived(tier: Tier, request: bytes, response: RawResponse) -> None:
    """What any hostile request must leave behind: no 5xx, no traceback in the answer, the
    process alive and answering a normal request."""
    shown = request if len(request) < 600 else request[:300] + b"..." + request[-300:]
    assert response.status is None or response.status < 500, (
        f"{tier.module} answered {response.status} to {shown!r}:\n{response.head!r}\n"
        f"{response.body[:2000]!r}"
    )
    assert not TRACEBACK.search(response.head + response.body), (
        f"{tier.module} showed a traceback for {shown!r}:\n{response.body[:4000]!r}"
    )
    for value in response.header("traceresponse"):
        assert TRACERESPONSE.fullmatch(value), f"traceresponse {value!r} for {shown!r}"
    assert tier.proc is not None
    assert tier.proc.poll() is None, f"{tier.module} exited after {shown!r}:\n{tier.logs()}"
    normal = httpx.get(f"{tier.url}/", timeout=EXCHANGE_TIMEOUT_S)
    assert normal.status_code == 200, f"after {shown!r}: {normal.status_code} {normal.text}"


@contextlib.contextmanager
def no_traceback_logged(*tiers: Tier) -> Iterator[None]:
    """What each of `tiers` logs while the block runs holds no traceback. Around a whole @given
    run, not per example: a traceback logged after its answer went out still counts, in this
    test."""
    starts = [len(tier.logs()) for tier in tiers]
    yield
    for tier, start in zip(tiers, starts, strict=True):
        logged = tier.logs()[start:]
        assert "Traceback" not in logged, f"{tier.module} logged a traceback:\n{logged[-4000:]}"


# -- strategies -----------------------------------------------------------------------------

LINE_BREAKS = re.compile(rb"[\r\n]")


def _no_line_breaks(value: bytes) -> bytes:
    return LINE_BREAKS.sub(b"", value)


# Text as UTF-8, lone surrogates included: "surrogatepass" turns them into invalid UTF-8.
_utf8ish = st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))
_any_bytes = st.binary(max_size=200)
_hex = st.text("0123456789abcdefABCDEF-", max_size=60).map(str.encode)
_traceparent = st.one_of(
    st.from_regex(r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z").map(str.encode),
    st.tuples(
        st.sampled_from(["00", "ff", "01", "zz", ""]),
        st.sampled_from(["0" * 32, "f" * 32, "4bf92f3577b34da6a3ce929d0e0e4736", "x" * 32, ""]),
        st.sampled_from(["0" * 16, "00f067aa0ba902b7", "g" * 16, ""]),
        st.sampled_from(["00", "01", "03", "ff", "1", ""]),
        st.text(max_size=10),
    ).map(lambda p: "-".join(p[:4]).encode() + p[4].encode("utf-8", "surrogatepass")),
    _hex,
)
_member_key = st.one_of(st.from_regex(r"\A[a-z][a-z0-9_\-*/@]{0,20}\Z"), st.text(max_size=20))
_member_value = st.one_of(st.from_regex(r"\A[!-+\--<>-~]{0,30}\Z"), st.text(max_size=30))
_tracestate = st.one_of(
    st.lists(st.tuples(_member_key, _member_value), max_size=40).map(
        lambda members: ",".join(f"{k}={v}" for k, v in members).encode("utf-8", "surrogatepass")
    ),
    st.integers(1, 2000).map(lambda n: b",".join(b"k%d=v%d" % (i, i) for i in range(n))),
)
_baggage = st.one_of(
    st.lists(
        st.tuples(_member_key, _member_value, st.lists(st.text(max_size=15), max_size=3)),
        max_size=40,
    ).map(
        lambda members: ",".join(
            f"{k}={v}" + "".join(f";{p}" for p in props) for k, v, props in members
        ).encode("utf-8", "surrogatepass")
    ),
    st.lists(st.sampled_from(["%", "%zz", "%C3%28", "%FF", "=", ";", ",", "k=v"]), max_size=30).map(
        lambda parts: "".join(parts).encode()
    ),
    st.integers(1, 400).map(lambda n: b",".join(b"key%d=%s" % (i, b"v" * 200) for i in range(n))),
)
_long = st.integers(1000, 60_000).map(lambda n: b"a" * n)
_value = st.one_of(_utf8ish, _any_bytes, _hex, _long).map(_no_line_breaks)
_trace_header = st.one_of(
    st.tuples(st.sampled_from([b"traceparent", b"Traceparent", b"TRACEPARENT"]), _traceparent),
    st.tuples(st.sampled_from([b"tracestate", b"TraceState"]), _tracestate),
    st.tuples(st.sampled_from([b"baggage", b"Baggage"]), _baggage),
    st.tuples(st.sampled_from([b"traceparent", b"tracestate", b"baggage"]), _value),
).map(lambda h: (h[0], _no_line_breaks(h[1])))

trace_headers = st.lists(_trace_header, min_size=1, max_size=6)
"""One to six trace headers (repeats included), each well-formed, nearly or not at all."""

hosts = st.one_of(
    st.none(),
    st.sampled_from([b"", b"127.0.0.1:1", b"[::1]", b"a" * 300, b"h\xc3\x28st", b"h\xffst"]),
    _utf8ish.map(_no_line_breaks),
    _any_bytes.map(_no_line_breaks),
)
"""A Host header's value, or None for no Host header."""

_path_piece = st.one_of(
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([b"%", b"%zz", b"%FF", b"%C3%28", b"..", b"//", b"?", b"#", b"%00"]),
)
_path = st.lists(_path_piece, max_size=20).map(b"".join)
targets = st.one_of(
    st.tuples(_path, st.integers(0, 60_000)).map(lambda p: b"/" + p[0] + b"x" * p[1]),
    st.tuples(_path, st.integers(0, 60_000)).map(lambda q: b"/?" + q[0] + b"q" * q[1]),
    st.sampled_from([b"*", b"http://127.0.0.1/", b"//", b"/%", b"/..%2f..%2fetc/passwd"]),
).map(lambda t: re.sub(rb"[\s]", b"", t) or b"/")
"""A request target: a path or a query, long (up to 60 kB) and not always UTF-8 or valid."""

_name = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}\Z").map(str.encode),
    st.sampled_from([b"traceparent", b"tracestate", b"baggage", b"x-forwarded-for"]),
)
many_headers = st.tuples(
    st.integers(100, 5000), _name, st.sampled_from([b"", b"v", b"\xff\xfe", b"x" * 100])
)
"""(count, name, value): that many headers; names numbered unless repeated as they are."""


def numbered_headers(count: int, name: bytes, value: bytes, repeat: bool) -> Headers:
    if repeat:
        return [(name, value)] * count
    return [(name + b"-%d" % i, value) for i in range(count)]
