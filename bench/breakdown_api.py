"""Item 5's api_v3 figure: `netgap breakdown --source` against `netgap collect`, end to end.

A fresh `netgap collect` (its own process, as a user runs it) is filled with traces shaped as
the lab's tiers send them (five spans; the CLIENT span with its four connection-phase events,
TCP_INFO, remote time and the HTTP attributes; the API's SERVER span with its TCP_INFO), then
this process reads one window of them the way `netgap breakdown --source URL` does
(netgap.analysis.build_report over a JaegerQuery: the HTTP searches, the JSON
decode, the breakdown and the aggregate), timed per round. Beside it, the same window from
the collector's SQLite file (--store), which must give the very same summary.

    .venv/bin/python -m bench.breakdown_api [--traces 6000] [--rounds 3]
"""

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench import stack
from bench.report import Figure, table
from netgap.analysis import build_report
from netgap.collector.store import Store
from netgap.lab import running
from netgap.trace_source import JaegerQuery

TARGET = 3_000  # traces/s, issue 18
TRACES = 6_000  # about what `netgap breakdown --since 5m` meets on the cluster's traffic
PER_REQUEST = 100  # traces per export request (500 spans, as a tier's batch)
STEP_NS = 50_000_000  # one trace every 50 ms: 6,000 traces span 5 minutes
MS = 1_000_000

Value = str | int | float | bool


def _kv(key: str, value: Value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(service: str) -> Resource:
    return Resource(
        attributes=[
            _kv("service.name", service),
            _kv("service.instance.id", f"{service}-4b0c0b6e-1c1f-4a40"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.version", "1.45.2"),
            _kv("host.name", "node-1"),
        ]
    )


def _tcp(rnd: random.Random) -> list[KeyValue]:
    """A TCP_INFO reading as tierkit.tcpinfo writes it."""
    srtt = rnd.randrange(20, 400)
    return [
        _kv("netgap.tcp.rttvar_us", srtt // 2),
        _kv("netgap.tcp.rto_us", 201_000),
        _kv("netgap.tcp.min_rtt_us", rnd.randrange(5, 20)),
        _kv("netgap.tcp.snd_cwnd", 10),
        _kv("netgap.tcp.lost", 0),
        _kv("netgap.tcp.delivery_rate_bps", rnd.randrange(10**8, 10**9)),
        _kv("netgap.tcp.new_connection", False),
        _kv("netgap.tcp.bytes_retransmitted", 0),
        _kv("netgap.tcp.srtt_us", srtt),
        _kv("netgap.tcp.retransmits", 0),
    ]


_SERVER_HTTP = [
    _kv("http.request.method", "GET"),
    _kv("url.scheme", "http"),
    _kv("url.path", "/"),
    _kv("http.route", "/"),
    _kv("network.protocol.version", "1.1"),
    _kv("server.address", "127.0.0.1"),
    _kv("server.port", 8800),
    _kv("user_agent.original", "wrk"),
    _kv("client.address", "127.0.0.1"),
    _kv("client.port", 53124),
    _kv("http.response.status_code", 200),
]
_CLIENT_HTTP = [
    _kv("http.request.method", "GET"),
    _kv("url.full", "http://127.0.0.1:8801/"),
    _kv("server.address", "127.0.0.1"),
    _kv("server.port", 8801),
    _kv("network.protocol.version", "1.1"),
    _kv("peer.service", "apitier"),
    _kv("http.response.status_code", 200),
]


def _trace(start_ns: int, rnd: random.Random) -> tuple[list[Span], list[Span]]:
    """One request's spans: the web tier's part and the API tier's."""
    trace_id, root, call, served, handler, query = (rnd.randbytes(n) for n in (16, 8, 8, 8, 8, 8))
    t = start_ns
    remote_ns = rnd.randrange(150_000, 3 * MS)  # before and after the API's server span
    api_ns = rnd.randrange(2 * MS, 4 * MS)
    call_start = t + rnd.randrange(MS, 2 * MS)
    call_end = call_start + api_ns + remote_ns
    served_start = call_start + remote_ns // 2
    sent = call_start + 40_000
    first = served_start + api_ns + 30_000

    def span(span_id: bytes, parent: bytes, name: str, kind: Any, lo: int, hi: int) -> Span:
        return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                    kind=kind, start_time_unix_nano=lo, end_time_unix_nano=hi)  # fmt: skip

    web_root = span(root, b"", "GET /", Span.SPAN_KIND_SERVER, t, call_end + rnd.randrange(MS))
    web_root.attributes.extend(_SERVER_HTTP)
    client = span(call, root, "GET", Span.SPAN_KIND_CLIENT, call_start, call_end)
    client.attributes.extend(_CLIENT_HTTP)
    client.attributes.extend(_tcp(rnd))
    client.attributes.append(_kv("netgap.remote_seconds", remote_ns / 1e9))
    client.attributes.append(_kv("netgap.connection.reused", True))
    for name, at in (("request sent", sent), ("first byte", first), ("body done", first + 9_000)):
        client.events.add(name=name, time_unix_nano=at)
    server = span(served, call, "GET /", Span.SPAN_KIND_SERVER, served_start, served_start + api_ns)
    server.attributes.extend(_SERVER_HTTP)
    server.attributes.extend(_tcp(rnd))
    inner = span(handler, served, "api-handler", Span.SPAN_KIND_INTERNAL, served_start + 50_000,
                 served_start + api_ns - 50_000)  # fmt: skip
    leaf = span(query, handler, "fast-query", Span.SPAN_KIND_INTERNAL, served_start + 60_000,
                served_start + 60_000 + 2 * MS)  # fmt: skip
    return [web_root, client], [server, inner, leaf]


def request_bodies(traces: int, start_ns: int, rnd: random.Random) -> list[bytes]:
    """Export requests of PER_REQUEST traces, the web tier's and the API tier's in turn, one
    trace every STEP_NS from `start_ns`."""
    bodies: list[bytes] = []
    for first in range(0, traces, PER_REQUEST):
        web: list[Span] = []
        api: list[Span] = []
        for i in range(first, min(first + PER_REQUEST, traces)):
            web_part, api_part = _trace(start_ns + i * STEP_NS, rnd)
            web += web_part
            api += api_part
        for service, scope, spans in (("webtier", "tierkit.tracing", web),
                                      ("apitier", "tierkit.tracing", api)):  # fmt: skip
            request = ExportTraceServiceRequest(
                resource_spans=[
                    ResourceSpans(
                        resource=_resource(service),
                        scope_spans=[
                            ScopeSpans(scope=InstrumentationScope(name=scope), spans=spans)
                        ],
                    )
                ]
            )
            bodies.append(request.SerializeToString())
    return bodies


@dataclass(frozen=True)
class Result:
    traces: int
    rates: list[float]  # traces/s per round, over HTTP
    store_rate: float  # the same window from the SQLite file, once
    same: bool  # both summaries equal

    def to_dict(self) -> dict[str, Any]:
        return {
            "traces": self.traces,
            "traces_per_s": [round(r) for r in self.rates],
            "store_traces_per_s": round(self.store_rate),
            "same_summary": self.same,
        }

    def figures(self) -> list[Figure]:
        same = "" if self.same else "; its summary DIFFERS from the store's"
        return [
            Figure(5, f"breakdown over HTTP api_v3 from `netgap collect` ({self.traces:,} "
                   f"traces, end to end{same})", statistics.median(self.rates), "traces/s", ">=",
                   TARGET),
            Figure(5, "  the same window from its SQLite file (--store)", self.store_rate,
                   "traces/s"),
        ]  # fmt: skip


def measure(logs: Path, *, traces: int = TRACES, rounds: int = 3,
            say: Callable[[str], None] = print) -> Result:  # fmt: skip
    """Fills a fresh collector with `traces` traces and reads them back `rounds` times."""
    start_ns = time.time_ns() - traces * STEP_NS - 10**9
    bodies = request_bodies(traces, start_ns, random.Random(18))  # noqa: S311
    db = logs / "breakdown-api.db"
    proc, otlp = stack.collector("breakdown-api-collector", logs, db)
    with running(proc):
        with httpx.Client(headers={"content-type": "application/x-protobuf"}, timeout=60) as c:
            for body in bodies:
                c.post(otlp + "/v1/traces", content=body).raise_for_status()
        query = stack.query_url(proc)
        window = (start_ns, start_ns + traces * STEP_NS + 10**9)
        rates = []
        summary: dict[str, Any] = {}
        for _ in range(rounds):
            started = time.perf_counter()
            with JaegerQuery(query) as source:
                summary = build_report(source, "webtier", *window)["summary"]
            rates.append(summary["traces"] / (time.perf_counter() - started))
        say("  api_v3 breakdown, traces/s per round: " + ", ".join(f"{r:,.0f}" for r in rates))
    started = time.perf_counter()
    with Store(db) as store:
        local = build_report(store, "webtier", *window)["summary"]
    store_rate = local["traces"] / (time.perf_counter() - started)
    return Result(summary["traces"], rates, store_rate, local == summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=TRACES)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with TemporaryDirectory(prefix="netgap-breakdown-api-") as folder:
        result = measure(Path(folder), traces=args.traces, rounds=args.rounds)
    print(table(result.figures()))
    print("summaries " + ("equal" if result.same else "DIFFER") + " (HTTP vs --store)")


if __name__ == "__main__":
    main()
