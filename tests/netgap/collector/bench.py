"""How fast `netgap collect` takes spans in and answers queries; not a test (nothing asserts
a speed), a measurement to repeat:

    .venv/bin/python -m tests.netgap.collector.bench [--batches 200] [--spans 512]

Starts the collector as its own process, pinned to CPU 0 with taskset when there is one, on a
fresh database; one client (this process, on another CPU) posts pre-built OTLP/HTTP protobuf
requests back to back, each of --spans spans, the web and the API tier's parts of traces of
five in turn, as the tiers export them (request_bodies), start times spread evenly over the
last 15 minutes. Then it times trace-by-id and 15-minute searches over what is stored.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from netgap.timeparse import format_rfc3339_ns
from tests.netgap.commands.processes import collect_command

WINDOW_NS = 15 * 60 * 10**9


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(service: str) -> Resource:
    return Resource(
        attributes=[
            _kv("service.name", service),
            _kv("service.instance.id", "4b0c0b6e-1c1f-4a40-9f2d-2f3c1c9d1a11"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.version", "1.45.2"),
            _kv("host.name", "node-1"),
        ]
    )


WEB, API = _resource("webtier"), _resource("apitier")
WEB_SCOPE = InstrumentationScope(name="opentelemetry.instrumentation.httpx")
API_SCOPE = InstrumentationScope(name="apitier")
ATTRIBUTES = [
    _kv("http.request.method", "GET"),
    _kv("url.path", "/"),
    _kv("http.response.status_code", 200),
    _kv("server.address", "127.0.0.1"),
    _kv("server.port", 8801),
    _kv("network.protocol.version", "1.1"),
    _kv("netgap.connection.reused", True),
    _kv("user_agent.original", "python-httpx/0.28.1"),
]


def request_bodies(count: int, spans: int, start_ns: int, rnd: random.Random) -> list[bytes]:
    """`count` export requests of `spans` spans each, as the lab's tiers send them: the web
    tier's (each trace's SERVER root and its CLIENT call) and the API tier's (the SERVER span
    serving that call, api-handler, fast-query) in turn, each trace's two parts in a pair of
    requests; start times spread from `start_ns` over WINDOW_NS."""
    step = WINDOW_NS // max(count, 1)
    web: list[Span] = []
    api: list[Span] = []
    bodies: list[bytes] = []
    while len(bodies) < count:
        wanted = web if len(bodies) % 2 == 0 else api
        while len(wanted) < spans:
            web_part, api_part = _trace(start_ns + len(bodies) * step, rnd)
            web += web_part
            api += api_part
        resource, scope = (WEB, WEB_SCOPE) if wanted is web else (API, API_SCOPE)
        bodies.append(_body(resource, scope, wanted[:spans]))
        del wanted[:spans]
    return bodies


def _trace(start_ns: int, rnd: random.Random) -> tuple[list[Span], list[Span]]:
    trace_id, root, call, served = (rnd.randbytes(n) for n in (16, 8, 8, 8))
    t0 = start_ns + rnd.randrange(10**9)

    def span(
        span_id: bytes,
        parent: bytes,
        name: str,
        kind: "Span.SpanKind.ValueType",
        start: int,
        end: int,
    ) -> Span:
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=ATTRIBUTES if kind != Span.SPAN_KIND_INTERNAL else (),
        )

    handler = rnd.randbytes(8)
    web_part = [
        span(root, b"", "GET /", Span.SPAN_KIND_SERVER, t0, t0 + 7_000_000),
        span(call, root, "GET", Span.SPAN_KIND_CLIENT, t0 + 1_000_000, t0 + 6_000_000),
    ]
    api_part = [
        span(served, call, "GET /", Span.SPAN_KIND_SERVER, t0 + 1_500_000, t0 + 5_000_000),
        span(handler, served, "api-handler", Span.SPAN_KIND_INTERNAL, t0 + 1_600_000,
             t0 + 4_900_000),
        span(rnd.randbytes(8), handler, "fast-query", Span.SPAN_KIND_INTERNAL, t0 + 1_700_000,
             t0 + 3_800_000),
    ]  # fmt: skip
    return web_part, api_part


def _body(resource: Resource, scope: InstrumentationScope, spans: list[Span]) -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])
        ]
    )
    body: bytes = request.SerializeToString()
    return body


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_ms(call: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--spans", type=int, default=512)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="netgap-bench-"))
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    argv = collect_command(
        "--db", str(folder / "traces.db"), "--otlp-http", "127.0.0.1:0",
        "--otlp-grpc", "off", "--query", "127.0.0.1:0", "--max-spans", "0",
    )  # fmt: skip
    collector = subprocess.Popen([*taskset, *argv], stdout=subprocess.PIPE, text=True)
    assert collector.stdout is not None
    banner = "".join(collector.stdout.readline() for _ in range(5))
    otlp = re.search(r"otlp/http on (\S+)", banner)
    api = re.search(r"query on (\S+)/api/v3/", banner)
    assert otlp, banner
    assert api, banner
    now = time.time_ns()
    rnd = random.Random(1)
    bodies = request_bodies(args.batches, args.spans, now - WINDOW_NS, rnd)
    try:
        with httpx.Client(headers={"content-type": "application/x-protobuf"}) as client:
            client.post(otlp.group(1), content=bodies[0]).raise_for_status()  # warm up
            cpu_before, started = cpu_seconds(collector.pid), time.perf_counter()
            for body in bodies[1:]:
                client.post(otlp.group(1), content=body).raise_for_status()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(collector.pid) - cpu_before
        spans = (args.batches - 1) * args.spans
        print(
            f"{pinned(taskset)}; requests of {args.spans} spans, {len(bodies[0]) // 1024} KiB each"
        )
        print(
            f"ingest: {spans / elapsed:,.0f} spans/s ({spans} spans in {elapsed:.2f} s, one client)"
        )
        per_span = cpu / spans * 1e6
        print(f"  collector CPU {per_span:.1f} us/span = {spans / cpu:,.0f} spans per CPU-second")
        with httpx.Client(base_url=api.group(1), timeout=30) as client:
            window = {
                "query.service_name": "webtier",
                "query.start_time_min": format_rfc3339_ns(now - WINDOW_NS),
                "query.start_time_max": format_rfc3339_ns(now),
            }
            found = client.get("/api/v3/traces", params={**window, "query.num_traces": "50"})
            ids = sorted({s["traceId"] for rs in found.json()["result"]["resourceSpans"]
                          for ss in rs["scopeSpans"] for s in ss["spans"]})  # fmt: skip
            print(f"stored: about {args.batches * args.spans // 5:,} traces of 5 spans")
            by_id = median_ms(
                lambda: client.get(f"/api/v3/traces/{rnd.choice(ids)}").raise_for_status(), 100
            )
            print(f"trace by id: {by_id:.2f} ms (median, over HTTP)")
            for limit in ("20", "100"):
                took = search_ms(client, {**window, "query.num_traces": limit})
                print(f"15-minute search, num_traces={limit}: {took:.2f} ms")
            by_operation = {"query.operation_name": "GET /", "query.duration_min": "4ms"}
            took = search_ms(client, {**window, **by_operation})
            print(f"15-minute search by operation and duration, num_traces=100: {took:.2f} ms")
    finally:
        collector.terminate()
        collector.wait(30)
        print(f"collector exit {collector.returncode}; database {size_mib(folder):.0f} MiB")
        shutil.rmtree(folder)


def search_ms(client: httpx.Client, params: dict[str, str]) -> float:
    return median_ms(lambda: client.get("/api/v3/traces", params=params).raise_for_status(), 20)


def pinned(taskset: list[str]) -> str:
    return "collector pinned to CPU 0" if taskset else "collector not pinned (no taskset)"


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir()) / 2**20


if __name__ == "__main__":
    main()
