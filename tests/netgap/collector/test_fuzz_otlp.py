"""Mutated OTLP/HTTP payloads against a running collector, over real loopback sockets.

Every example starts from a valid export (protobuf or JSON) of a fresh trace under a fresh
service name, then breaks it: bit flips, truncation, random bytes, a wrong Content-Type, JSON
leaves of the wrong type, huge numbers or invalid hex ids, gzip or deflate over it (or over
garbage), gzip bombs. The collector must answer 200 or a 4xx (never a 5xx, never a traceback),
keep nothing of a refused request, and the valid traces stored before and after read back
through api_v3 byte for byte as they did before the fuzzing.
"""

import dataclasses
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from netgap.collector.server import Collector, serving_in_thread
from netgap.model import Span
from netgap.otlp_json import json_from_spans
from netgap.otlp_proto import request_from_spans, spans_from_request
from tests.netgap.collector.conftest import local_settings
from tests.netgap.collector.spans import two_tier_trace
from tests.netgap.spans import NOW_NS, new_trace_id

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACEBACK = re.compile(rb"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BODY = 1024 * 1024


@dataclass
class Lab:
    collector: Collector
    http: httpx.Client
    valid: dict[str, bytes] = field(default_factory=dict, repr=False)  # trace id -> api_v3
    services: set[str] = field(default_factory=set, repr=False)

    def read_trace(self, trace_id: str) -> httpx.Response:
        return self.http.get(f"{self.collector.query_url}/api/v3/traces/{trace_id}")

    def read_services(self) -> set[str]:
        response = self.http.get(f"{self.collector.query_url}/api/v3/services")
        assert response.status_code == 200, response.text
        return set(response.json()["services"])

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        url = self.collector.otlp_http_url
        assert url is not None
        return self.http.post(url, content=body, headers=headers)

    def store_valid(self, encoding: str) -> None:
        """One valid trace in, read back, remembered as the bytes api_v3 gave."""
        trace_id = new_trace_id()
        body = encode(template(trace_id, "valid"), encoding)
        assert self.post(body, {"content-type": encoding}).status_code == 200
        response = self.read_trace(trace_id)
        assert response.status_code == 200, response.text
        self.valid[trace_id] = response.content
        self.services = self.read_services()

    def assert_valid_intact(self) -> None:
        for trace_id, stored in self.valid.items():
            again = self.read_trace(trace_id)
            assert again.status_code == 200, again.text
            assert again.content == stored, f"trace {trace_id} reads back differently"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "traces.db"
    settings = local_settings(db, max_age_s=None, max_spans=None, max_body=MAX_BODY)
    with serving_in_thread(Collector(settings)) as collector, httpx.Client(timeout=30) as http:
        lab = Lab(collector, http)
        for encoding in (PROTOBUF, JSON, PROTOBUF):
            lab.store_valid(encoding)
        yield lab


def template(trace_id: str, service: str) -> list[Span]:
    spans = two_tier_trace(NOW_NS, trace_id)
    # every span under the one service, so a refused request that left anything behind shows
    # up as a new service in api_v3
    return [
        dataclasses.replace(span, service=service, resource={"service.name": service})
        for span in spans
    ]


def encode(spans: list[Span], encoding: str) -> bytes:
    if encoding == PROTOBUF:
        return bytes(request_from_spans(spans).SerializeToString())
    return json.dumps(json_from_spans(spans)).encode()


# -- mutations ------------------------------------------------------------------------------

Mutation = tuple[str, Any]

_bit_flips = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=8)
_hostile_leaf: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [None, True, [], {}, "", "zz", "0" * 32, "0" * 16, "abc", "f" * 33, "x" * 10_000]
    ),
    st.sampled_from([10**30, -1, 2**64, 2**63, -(2**63) - 1, 1e308, -0.0, 0.5, 10**400]),
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=False),
)
mutations = st.one_of(
    st.tuples(st.just("flip"), _bit_flips),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("splice"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),
    st.tuples(st.just("random"), st.binary(max_size=2000)),
    st.tuples(st.just("json-leaf"), st.tuples(st.integers(0, 10_000), _hostile_leaf)),
    st.tuples(st.just("none"), st.none()),
)
content_types = st.one_of(
    st.just(""),  # (half the time: the right one)
    st.sampled_from(
        [
            "",  # the one of the payload's own encoding
            PROTOBUF,
            JSON,
            "application/protobuf",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "APPLICATION/JSON",
        ]
    ),
    # (httpx sends no header value with spaces around it)
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip),
)
codings = st.one_of(
    st.just(""),  # (half the time: none)
    st.sampled_from(["gzip", "deflate", "gzip-then-flip", "identity", "br", "gzip-bomb"]),
)


def mutate(body: bytes, encoding: str, mutation: Mutation) -> bytes:
    kind, arg = mutation
    if kind == "flip":
        data = bytearray(body)
        for position, bit in arg:
            data[position % len(data)] ^= 1 << bit
        return bytes(data)
    if kind == "truncate":
        return body[: int(len(body) * arg)]
    if kind == "splice":
        where, junk = arg
        junk = bytes(junk)
        at = int(len(body) * where)
        return body[:at] + junk + body[at + len(junk) :]
    if kind == "random":
        return bytes(arg)
    if kind == "json-leaf":
        document = json.loads(body) if encoding == JSON else json.loads(encode_json_of(body))
        leaves = list(_leaf_paths(document))
        path = leaves[arg[0] % len(leaves)]
        _set(document, path, arg[1])
        return json.dumps(document).encode()
    return body


def encode_json_of(protobuf: bytes) -> bytes:
    spans = spans_from_request(ExportTraceServiceRequest.FromString(protobuf))
    return json.dumps(json_from_spans(spans)).encode()


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        yield path
        return
    yield path  # the container itself can be replaced too
    for key, child in items:
        yield from _leaf_paths(child, (*path, key))


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    if not path:
        return
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


_BOMB = gzip.compress(bytes(MAX_BODY * 20), 9)  # 20 MiB of zeros in ~20 kB


def encode_coding(body: bytes, coding: str, flips: list[tuple[int, int]]) -> tuple[bytes, str]:
    if coding == "gzip":
        return gzip.compress(body), "gzip"
    if coding == "deflate":
        return zlib.compress(body), "deflate"
    if coding == "gzip-then-flip":
        return mutate(gzip.compress(body), PROTOBUF, ("flip", flips)), "gzip"
    if coding == "gzip-bomb":
        return _BOMB, "gzip"
    return body, coding


@FUZZ
@given(
    encoding=st.sampled_from([PROTOBUF, JSON]),
    mutation=mutations,
    content_type=content_types,
    coding=codings,
    flips=_bit_flips,
)
def test_mutated_payloads_are_stored_whole_or_not_at_all(
    lab: Lab,
    encoding: str,
    mutation: Mutation,
    content_type: str,
    coding: str,
    flips: list[tuple[int, int]],
) -> None:
    trace_id = new_trace_id()
    service = f"fuzz-{trace_id[:12]}"
    body = mutate(encode(template(trace_id, service), encoding), encoding, mutation)
    if mutation[0] == "json-leaf":
        encoding = JSON  # what the mutation made of it
    body, content_encoding = encode_coding(body, coding, flips)
    headers = {"content-type": content_type or encoding}
    if content_encoding:
        headers["content-encoding"] = content_encoding
    response = lab.post(body, headers)
    shown = f"{headers} {body[:300]!r}{'...' if len(body) > 300 else ''}"
    assert response.status_code == 200 or 400 <= response.status_code < 500, (
        f"{response.status_code} {response.content[:2000]!r} for {shown}"
    )
    assert not TRACEBACK.search(response.content), f"{response.content!r} for {shown}"
    event(f"{mutation[0]} {coding or '-'}: {response.status_code}")
    services = lab.read_services()
    if response.status_code == 200:
        lab.services = services  # a mutation that is still valid OTLP: stored, fine
    else:
        assert services == lab.services, f"refused, yet stored {services - lab.services}: {shown}"
        assert lab.read_trace(trace_id).status_code == 404, f"refused, yet stored: {shown}"


def test_valid_traces_before_and_after_read_back_byte_for_byte(lab: Lab) -> None:
    """Runs after the fuzzing above, on the same collector."""
    lab.assert_valid_intact()
    before = dict(lab.valid)
    lab.store_valid(JSON)
    lab.store_valid(PROTOBUF)
    assert len(lab.valid) == len(before) + 2
    lab.assert_valid_intact()
