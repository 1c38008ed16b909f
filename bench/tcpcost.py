"""Issue 9's cost in full: what TCP_INFO adds to one request of the lab, both ends.

Per request the tiers do, beyond what they do with TCP_INFO_ENABLED=false: on the web tier's
CLIENT span and the API tier's SERVER span, read the connection's TCP_INFO (through uvloop's
transport socket, as the tiers get it), parse it, set the ten netgap.tcp.* attributes on the
span, and encode them for export; the web tier also records the srtt and retransmission
metrics. This runs exactly those calls on two live spans a request, against the same two spans
without them, alternating, and reports the difference per request and per part.
"""

import asyncio
import gc
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvloop
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AnyValue
from prometheus_client import CollectorRegistry

from tierkit.lean.encoder import Encoder
from tierkit.metrics import OutboundMetrics
from tierkit.tcpinfo import TCP_INFO, Testimony, Witness

# What the tiers' spans carry besides the testimony (contrib's HTTP spans, tierkit.exchange).
_CLIENT: dict[str, AnyValue] = {
    "http.request.method": "GET", "url.full": "http://127.0.0.1:8801/",
    "server.address": "127.0.0.1", "server.port": 8801, "network.peer.address": "127.0.0.1",
    "network.peer.port": 8801, "network.protocol.version": "1.1",
}  # fmt: skip
_SERVER: dict[str, AnyValue] = {
    "http.request.method": "GET", "url.path": "/", "url.scheme": "http",
    "network.protocol.version": "1.1", "server.address": "127.0.0.1", "server.port": 8801,
    "client.address": "127.0.0.1", "client.port": 50000, "user_agent.original": "python-httpx",
}  # fmt: skip


@dataclass(frozen=True)
class Cost:
    """Nanoseconds per request (two spans), medians over the rounds."""

    total_ns: float  # everything below, measured together against the same spans without it
    read_ns: float  # getsockopt + parse + the retransmission delta (Witness.testify), both ends
    attributes_ns: float  # Testimony.attributes + Span.set_attributes, both spans
    metrics_ns: float  # OutboundMetrics.observe_tcp (the web tier's)
    encode_ns: float  # the OTLP encoding of the two spans' testimony
    blocks: list[float]  # total_ns per block of requests


class _Kept(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


_RECORDED = 500  # testimonies of a busy connection, whose values the measured spans carry
_BLOCKS = 8  # per round: short blocks, alternated, so a slow moment hits both variants alike


def measure(rounds: int, requests: int = 250) -> Cost | None:
    """None off Linux, where there is no TCP_INFO (and nothing to pay)."""
    if TCP_INFO is None:
        return None
    return uvloop.run(_measure(rounds, requests))


async def _measure(rounds: int, requests: int) -> Cost:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caller_reader, caller = await asyncio.open_connection("127.0.0.1", port)
    callee_reader, callee = await accepted.get()
    try:
        witness = Witness()
        recorded = []
        # Exchanges as the tiers' (a small request, a larger answer), each end's TCP_INFO after
        # each: what the spans carry varies as a busy connection's does (srtt, delivery rate).
        for _ in range(_RECORDED):
            caller.write(b"x" * 100)
            await callee_reader.readexactly(100)
            callee.write(b"y" * 400)
            await caller_reader.readexactly(400)
            testimony = witness.testify(caller.transport.get_extra_info("socket"), False)
            if testimony is None:
                raise RuntimeError("TCP_INFO could not be read on a live loopback connection")
            recorded.append(testimony)
        return _rounds(
            caller.transport.get_extra_info("socket"),
            callee.transport.get_extra_info("socket"),
            recorded,
            rounds,
            requests,
        )
    finally:
        caller.close()
        callee.close()
        server.close()


def _rounds(
    caller: socket.socket,
    callee: socket.socket,
    recorded: list[Testimony],
    rounds: int,
    requests: int,
) -> Cost:
    kept = _Kept()
    provider = TracerProvider()
    provider.add_span_processor(kept)
    tracer = provider.get_tracer("bench")
    registry = CollectorRegistry(auto_describe=True)
    metrics = OutboundMetrics(registry, "webtier->apitier", address="127.0.0.1", port=8801)
    web, api, encoder = Witness(), Witness(), Encoder()

    def spans(with_tcp: bool) -> float:
        """ns of `requests` requests' spans, started, filled, ended and encoded."""
        started = time.perf_counter_ns()
        for i in range(requests):
            client = tracer.start_span("GET", kind=SpanKind.CLIENT, attributes=_CLIENT)
            found: dict[str, AnyValue] = {}
            if with_tcp:
                # Read for real; the values of a busy connection's reading are the ones set
                # (this idle one's would repeat, and the encoder caches repeated values).
                web.testify(caller, False)
                testimony = recorded[i % len(recorded)]
                metrics.observe_tcp(testimony)
                found = testimony.attributes()
            found["netgap.remote_seconds"] = 0.00021
            found["netgap.connection.reused"] = True
            client.set_attributes(found)
            client.end()
            served = tracer.start_span("GET /", kind=SpanKind.SERVER, attributes=_SERVER)
            served.set_attribute("http.response.status_code", 200)
            if with_tcp:
                api.testify(callee, False)
                served.set_attributes(recorded[-1 - i % len(recorded)].attributes())
            served.end()
        encoder.request(kept.spans)
        elapsed = time.perf_counter_ns() - started
        kept.spans.clear()
        gc.collect()
        return elapsed

    with _collector_paused():
        totals = _on_less_off(spans, rounds, requests)
        testimony = recorded[0]
        return Cost(
            total_ns=statistics.median(totals),
            read_ns=2 * _per_call(lambda: web.testify(caller, False)),
            attributes_ns=2 * _set_cost(tracer, testimony),
            metrics_ns=_per_call(lambda: metrics.observe_tcp(testimony)),
            encode_ns=2 * _encode_cost(tracer, kept, recorded),
            blocks=[round(t, 1) for t in totals],
        )


def _on_less_off(spans: Callable[[bool], float], rounds: int, requests: int) -> list[float]:
    """ns per request of the spans with TCP_INFO less without, block by block, the order
    alternating."""
    totals = []
    for i in range(max(1, rounds) * _BLOCKS):
        if i % 2 == 0:
            on, off = spans(True), spans(False)
        else:
            off, on = spans(False), spans(True)
        totals.append((on - off) / requests)
    return totals


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic GC, which would otherwise fire at an allocation count in one variant or
    the other, off while timing; collected between blocks instead."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _per_call(call: Callable[[], object], calls: int = 20_000) -> float:
    best = []
    for _ in range(3):
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best.append((time.perf_counter_ns() - started) / calls)
    return min(best)


def _set_cost(tracer: Tracer, testimony: Testimony) -> float:
    """Testimony.attributes + Span.set_attributes on a live span, less the span's own cost."""

    def with_attributes() -> None:
        span = tracer.start_span("GET /", kind=SpanKind.SERVER)
        span.set_attributes(testimony.attributes())
        span.end()

    def without() -> None:
        tracer.start_span("GET /", kind=SpanKind.SERVER).end()

    return _per_call(with_attributes) - _per_call(without)


def _encode_cost(tracer: Tracer, kept: _Kept, recorded: list[Testimony]) -> float:
    """The encoder's time for a span's testimony: spans with it less the same without."""
    batch = 512

    def encoded(with_tcp: bool) -> float:
        kept.spans.clear()
        for i in range(batch):
            span = tracer.start_span("GET /", kind=SpanKind.SERVER, attributes=_SERVER)
            if with_tcp:
                span.set_attributes(recorded[i % len(recorded)].attributes())
            span.end()
        spans, encoder = list(kept.spans), Encoder()
        kept.spans.clear()
        encoder.request(spans)  # its caches filled, as a running tier's are
        return _per_call(lambda: encoder.request(spans), 50) / batch

    return encoded(True) - encoded(False)
