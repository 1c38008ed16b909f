"""Hand-built traces with known answers."""

import itertools
from dataclasses import replace

from netgap.model import CLIENT, INTERNAL, SERVER, Event, Span
from tests.netgap.spans import make_span

_ids = itertools.count(1)
MS = 1_000_000
BASE = 1_795_608_000_000_000_000  # 2026-11-25T12:00:00Z


def new_id(width: int) -> str:
    return f"{next(_ids):0{width * 2}x}"


def chain(
    *,
    start: int = BASE,
    web_self: tuple[int, int] = (300_001, 200_003),  # before and after the call
    web_api_remote: tuple[int, int] = (150_007, 250_011),  # request and response legs
    api_self: tuple[int, int] = (1_000_013, 500_017),
    api_db_remote: tuple[int, int] = (70_019, 30_023),
    db_self: int = 2_000_029,
    offsets: dict[str, int] | None = None,
    with_db: bool = True,
) -> tuple[list[Span], dict[str, int]]:
    """web -> api (-> db): a SERVER/CLIENT chain with exactly known parts, each service's
    clock shifted by `offsets` (which must not change any answer)."""
    off = {"webtier": 0, "apitier": 0, "db": 0, **(offsets or {})}
    trace_id = new_id(16)
    db_total = db_self if with_db else 0
    db_call = api_db_remote[0] + db_total + api_db_remote[1] if with_db else 0
    api_total = api_self[0] + db_call + api_self[1]
    web_call = web_api_remote[0] + api_total + web_api_remote[1]
    web_total = web_self[0] + web_call + web_self[1]

    t = start + off["webtier"]
    web = make_span(
        trace_id,
        service="webtier",
        kind=SERVER,
        start_ns=t,
        end_ns=t + web_total,
        span_id=new_id(8),
    )
    out = make_span(
        trace_id,
        service="webtier",
        name="GET",
        kind=CLIENT,
        start_ns=t + web_self[0],
        end_ns=t + web_self[0] + web_call,
        parent_span_id=web.span_id,
        span_id=new_id(8),
    )
    a = start + off["apitier"] + web_self[0] + web_api_remote[0]
    api = make_span(
        trace_id,
        service="apitier",
        kind=SERVER,
        start_ns=a,
        end_ns=a + api_total,
        parent_span_id=out.span_id,
        span_id=new_id(8),
    )
    handler = make_span(
        trace_id,
        service="apitier",
        name="api-handler",
        kind=INTERNAL,
        start_ns=a,
        end_ns=a + api_total,
        parent_span_id=api.span_id,
        span_id=new_id(8),
    )
    spans = [web, out, api, handler]
    answer = {
        "total": web_total,
        "webtier self": sum(web_self),
        "webtier->apitier remote": sum(web_api_remote),
        "apitier self": sum(api_self),
    }
    if with_db:
        q = a + api_self[0]
        query = make_span(
            trace_id,
            service="apitier",
            name="SELECT",
            kind=CLIENT,
            start_ns=q,
            end_ns=q + db_call,
            parent_span_id=handler.span_id,
            span_id=new_id(8),
        )
        d = start + off["db"] + web_self[0] + web_api_remote[0] + api_self[0] + api_db_remote[0]
        db = make_span(
            trace_id,
            service="db",
            name="query",
            kind=SERVER,
            start_ns=d,
            end_ns=d + db_self,
            parent_span_id=query.span_id,
            span_id=new_id(8),
        )
        spans += [query, db]
        answer |= {"apitier->db remote": sum(api_db_remote), "db self": db_self}
    return spans, answer


def with_phases(
    client: Span, *, connect: int | None, request: int, waiting_total: int, response: int
) -> Span:
    """The client span with the web tier's connection-phase events, in order."""
    t = client.start_ns
    events = []
    if connect is not None:
        t += connect
        events.append(Event("connect", t))
    t += request
    events.append(Event("request sent", t))
    t += waiting_total
    events.append(Event("first byte", t))
    t += response
    events.append(Event("body done", t))
    attrs = {**client.attributes, "netgap.connection.reused": connect is None}
    return replace(client, events=tuple(events), attributes=attrs)
