"""Two-tier traces as the lab makes them, and every odd shape a breakdown must survive: a
missing server span, two roots, a root that is not a SERVER span, a callee's span that is not
one, a call of another service than the root's, nested client spans, a
second edge, two server spans for one call, spans between the root and its call, a cycle,
duplicate span ids, a server outlasting its client, connection-phase events present, partial
or absent, `netgap.connection.reused` True, False, absent or not a bool, and the kernel's
`netgap.tcp.srtt_us` / `retransmits` on the call and on the span serving it, present, one of
them absent, or not integers."""

import itertools
import random
from dataclasses import replace
from typing import Any

from netgap.model import CLIENT, INTERNAL, SERVER, UNSPECIFIED, Event, Span
from tests.netgap.spans import make_span

BASE_NS = 1_795_608_000_000_000_000  # 2026-11-25T12:00:00Z
PHASE_EVENTS = ("connect", "request sent", "first byte", "body done")
_serial = itertools.count(1)


def new_id(rnd: random.Random, width: int) -> str:
    """A random id, never zero and never one given before (hypothesis' random is not random
    enough for that)."""
    return f"{rnd.getrandbits(32):08x}{next(_serial):0{width * 2 - 8}x}"


def _events(rnd: random.Random, start: int, end: int, odd: bool) -> tuple[Event, ...]:
    """The web tier's phase events: all four, or the three of a reused connection; when `odd`,
    any subset, out of order, some twice, some with attributes."""
    names = list(PHASE_EVENTS if rnd.random() < 0.3 else PHASE_EVENTS[1:])
    if odd:
        names = [n for n in PHASE_EVENTS if rnd.random() < 0.7]
        names += rnd.sample(PHASE_EVENTS, rnd.randrange(2))
        rnd.shuffle(names)
    times = sorted(rnd.randrange(start, max(end, start + 1) + 1) for _ in names)
    return tuple(
        Event(name, t, {"n": 1} if odd and rnd.random() < 0.2 else {})
        for name, t in zip(names, times, strict=True)
    )


def lab_trace(rnd: random.Random, start: int = BASE_NS, odd: float = 0.5) -> list[list[Span]]:
    """One trace as requests to store (usually one; a re-sent span comes in a second). With
    probability `odd` the trace gets one or more of the odd shapes."""
    trace_id = new_id(rnd, 16)
    is_odd = rnd.random() < odd

    def maybe(p: float) -> bool:
        return is_odd and rnd.random() < p

    t0 = start + rnd.randrange(10**9)
    web_before, web_after = rnd.randrange(0, 3_000_000), rnd.randrange(0, 900_000)
    request, response = rnd.randrange(0, 2_000_000), rnd.randrange(0, 800_000)
    handler_ns, query_ns = rnd.randrange(0, 900_000), rnd.randrange(0, 2_300_000)
    if maybe(0.2):  # the server outlasts its client (remote < 0)
        request, response = -rnd.randrange(0, 200_000), 0
    api_ns = handler_ns + query_ns
    call_ns = max(0, request + api_ns + response)
    total = web_before + call_ns + web_after
    if maybe(0.1):  # the call outlasts the root span
        total = call_ns - rnd.randrange(1, 1000)
    if maybe(0.05):  # ties everywhere
        web_before = request = 0
    c0 = t0 + web_before
    a0 = c0 + max(request, 0)
    offset = rnd.choice((0, 0, 5_000_000_000, -7_000_000)) if is_odd else 0  # API clock
    a0 += offset

    root = make_span(
        trace_id,
        service="webtier",
        name="GET /",
        kind=SERVER,
        start_ns=t0,
        end_ns=t0 + total,
        span_id=new_id(rnd, 8),
    )
    if maybe(0.1):
        root = replace(root, kind=rnd.choice((INTERNAL, CLIENT, UNSPECIFIED)))
    parent_of_call = root.span_id
    spans = [root]
    if maybe(0.15):  # a span of the web tier between the root and its call
        between = make_span(
            trace_id,
            service="webtier",
            name="handler",
            kind=INTERNAL,
            start_ns=t0,
            end_ns=t0 + total,
            parent_span_id=root.span_id,
            span_id=new_id(rnd, 8),
        )
        spans.append(between)
        parent_of_call = between.span_id
    reused: Any = rnd.choice((True, True, True, False, None))
    if maybe(0.2):
        reused = rnd.choice((None, "true", 1, 0.0))
    attributes: dict[str, Any] = {"http.request.method": "GET", "server.port": 8801}
    if reused is not None:
        attributes["netgap.connection.reused"] = reused
    kernel = random.Random(trace_id)  # draws of its own: the other odd shapes stay as they were
    if kernel.random() < 0.7:
        attributes["netgap.tcp.srtt_us"] = kernel.choice((40, 250, 1_000_000, "40"))
        if kernel.random() < 0.9:
            attributes["netgap.tcp.retransmits"] = kernel.choice((0, 0, 1, 3, 0.5))
    if maybe(0.3):
        attributes["server.address"] = rnd.choice(("127.0.0.1", "api.internal"))
    call = make_span(
        trace_id,
        service="webtier",
        name="GET",
        kind=CLIENT,
        start_ns=c0,
        end_ns=c0 + call_ns,
        parent_span_id=parent_of_call,
        span_id=new_id(rnd, 8),
    )
    call = replace(
        call,
        attributes=attributes,
        events=() if maybe(0.15) else _events(rnd, c0, c0 + call_ns, is_odd),
    )
    if maybe(0.05):  # the call is another service's (a sidecar's?), under the root
        call = replace(call, service="sidecar", resource={"service.name": "sidecar"})
    spans.append(call)
    serving_call = call
    if maybe(0.1):  # nested client spans of the caller's library
        inner = make_span(
            trace_id,
            service="webtier",
            name="connect",
            kind=CLIENT,
            start_ns=c0,
            end_ns=c0 + call_ns,
            parent_span_id=call.span_id,
            span_id=new_id(rnd, 8),
        )
        spans.append(inner)
        serving_call = inner
    server = make_span(
        trace_id,
        service="apitier",
        name="GET /",
        kind=SERVER,
        start_ns=a0,
        end_ns=a0 + api_ns,
        parent_span_id=serving_call.span_id,
        span_id=new_id(rnd, 8),
    )
    if maybe(0.1):  # the callee's span is not a SERVER span
        server = replace(server, kind=rnd.choice((INTERNAL, UNSPECIFIED, CLIENT)))
    if kernel.random() < 0.7:  # the callee's end of the connection testifies too
        testimony: dict[str, Any] = {"netgap.tcp.srtt_us": kernel.choice((50, 300, 900_000, "50"))}
        if kernel.random() < 0.9:
            testimony["netgap.tcp.retransmits"] = kernel.choice((0, 0, 2, 0.5))
        server = replace(server, attributes={**server.attributes, **testimony})
    handler = make_span(
        trace_id,
        service="apitier",
        name="api-handler",
        kind=INTERNAL,
        start_ns=a0,
        end_ns=a0 + api_ns,
        parent_span_id=server.span_id,
        span_id=new_id(rnd, 8),
    )
    query = make_span(
        trace_id,
        service="apitier",
        name="fast-query",
        kind=INTERNAL,
        start_ns=a0 + handler_ns,
        end_ns=a0 + handler_ns + query_ns,
        parent_span_id=handler.span_id,
        span_id=new_id(rnd, 8),
    )
    if not maybe(0.15):  # else the server span is missing: unpaired (and maybe a 2nd root)
        spans.append(server)
    if not maybe(0.1):
        spans += [handler, query]
    if maybe(0.1):  # two server spans for one call
        spans.append(replace(server, span_id=new_id(rnd, 8), end_ns=server.end_ns + 7))
    if maybe(0.1):  # a span of the caller's service beneath the call
        spans.append(
            make_span(
                trace_id,
                service="webtier",
                name="retry",
                kind=SERVER,
                start_ns=a0,
                end_ns=a0 + 1,
                parent_span_id=serving_call.span_id,
                span_id=new_id(rnd, 8),
            )
        )
    if maybe(0.15):  # a second edge: the API calls a database
        db_call = make_span(
            trace_id,
            service="apitier",
            name="SELECT",
            kind=CLIENT,
            start_ns=a0,
            end_ns=a0 + query_ns,
            parent_span_id=handler.span_id,
            span_id=new_id(rnd, 8),
        )
        spans.append(db_call)
        if rnd.random() < 0.7:
            spans.append(
                make_span(
                    trace_id,
                    service="db",
                    name="query",
                    kind=SERVER,
                    start_ns=a0,
                    end_ns=a0 + query_ns // 2,
                    parent_span_id=db_call.span_id,
                    span_id=new_id(rnd, 8),
                )
            )
    if maybe(0.1):  # an orphan: its parent never arrived (a second root)
        spans.append(
            make_span(
                trace_id,
                service="apitier",
                name="late",
                kind=SERVER,
                start_ns=a0,
                end_ns=a0 + 5,
                parent_span_id=new_id(rnd, 8),
                span_id=new_id(rnd, 8),
            )
        )
    if maybe(0.05):  # two spans that are each other's parent
        a = make_span(
            trace_id,
            service="webtier",
            name="loop",
            kind=CLIENT,
            start_ns=t0,
            end_ns=t0 + 3,
            span_id=new_id(rnd, 8),
        )
        b = make_span(
            trace_id,
            service="apitier",
            name="loop",
            kind=SERVER,
            start_ns=t0,
            end_ns=t0 + 2,
            parent_span_id=a.span_id,
            span_id=new_id(rnd, 8),
        )
        spans += [replace(a, parent_span_id=b.span_id), b]
    if maybe(0.05):  # only the root arrived
        spans = [root]
    if maybe(0.1):  # the same span id twice in one request: the store keeps the first
        twin = rnd.choice(spans)
        spans.append(replace(twin, end_ns=twin.end_ns + 11, name="twin"))
    requests = [spans]
    if maybe(0.1):  # a span re-sent later
        requests.append([rnd.choice(spans)])
    return requests
