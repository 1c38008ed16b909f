"""Where a request's time went: each service's own time, and the time *between* services.

For one trace, with T the root span's duration:

    T = sum of every service's self time + sum of every edge's remote time      (exactly)

- an *edge* is a CLIENT span of service A whose call landed in a SERVER span of service B;
  its remote time = duration(client span) - duration(server span). Each duration is measured
  on one host's clock, so clock offset between nodes cancels out;
- a service's *self time* = its spans' time not spent waiting on its outbound calls
  (duration of each of its server/root spans minus the durations of the outbound calls made
  beneath it, in that service);
- an outbound call whose server span is missing (callee untraced, spans lost or late) counts
  wholly as remote and is counted as *unpaired*.

Where the CLIENT span carries the web tier's connection-phase events (`connect`,
`request sent`, `first byte`, `body done`), the remote time splits further into
connect + request + waiting + response + other, which again adds up exactly.

`break_down` takes any trace. `break_down_chain` is its fast path for the shape nearly every
trace of a two-tier system has (one SERVER root, one CLIENT call beneath it in the root's
service, one span of another service serving that call), read from lean span rows rather
than decoded spans; it gives None for any other shape, and then `break_down` is the answer.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.collector.otlp_proto import value as pb_value
from netgap.model import CLIENT, SERVER, Span

PHASES = ("connect", "request", "waiting", "response", "other")


def edge_name(caller: str, callee: str) -> str:
    return f"{caller}->{callee}"


@dataclass
class TraceBreakdown:
    trace_id: str
    start_ns: int
    total_ns: int
    root_service: str
    self_ns: dict[str, int] = field(default_factory=dict)
    remote_ns: dict[str, int] = field(default_factory=dict)
    # edge -> phase -> ns, for calls that carried connection-phase events
    phases_ns: dict[str, dict[str, int]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, int] = field(default_factory=dict)
    new_connections: dict[str, int] = field(default_factory=dict)
    reused_connections: dict[str, int] = field(default_factory=dict)
    # The kernel's testimony (TCP_INFO), edge -> (srtt ns, segments retransmitted) per call:
    # at the caller's end (its CLIENT span, for the calls that carried it), and at the
    # callee's (the span that served the call). Each end counts what it sent again.
    tcp: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    tcp_callee: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # component names in the order the request met them: caller self, edge, callee self, ...
    order: list[str] = field(default_factory=list)

    def components(self) -> dict[str, int]:
        """Every component of the total, named as the report shows them."""
        values = {f"{service} self": ns for service, ns in self.self_ns.items()}
        values.update({f"{edge} remote": ns for edge, ns in self.remote_ns.items()})
        return {name: values[name] for name in self.order}

    def charge(self, table: dict[str, int], key: str, ns: int, suffix: str) -> None:
        """Add `ns` to `table[key]`, noting the component's place in the order."""
        if f"{key} {suffix}" not in self.order:
            self.order.append(f"{key} {suffix}")
        table[key] = table.get(key, 0) + ns


class _Trace:
    """One trace's spans, indexed; duplicates (same span id) collapse to one."""

    def __init__(self, spans: Iterable[Span]) -> None:
        self.spans: dict[str, Span] = {}
        for span in spans:
            self.spans.setdefault(span.span_id, span)
        self.children: dict[str, list[Span]] = defaultdict(list)
        for span in self.spans.values():
            if span.parent_span_id:
                self.children[span.parent_span_id].append(span)
        for kids in self.children.values():
            kids.sort(key=lambda s: (s.start_ns, s.span_id))

    def roots(self) -> list[Span]:
        return sorted(
            (s for s in self.spans.values() if s.parent_span_id not in self.spans),
            key=lambda s: (s.start_ns, -s.duration_ns, s.span_id),
        )


def break_down(spans: Sequence[Span]) -> TraceBreakdown | None:
    """The breakdown of one trace, or None when it has no spans."""
    trace = _Trace(spans)
    roots = trace.roots()
    if not roots:
        return None
    root = next((s for s in roots if s.kind == SERVER), roots[0])
    result = TraceBreakdown(
        trace_id=root.trace_id,
        start_ns=root.start_ns,
        total_ns=root.duration_ns,
        root_service=root.service,
    )
    if len(roots) > 1:
        result.warnings.append(
            f"{len(roots)} root spans (spans missing or late); breaking down the one at "
            f"{root.service} {root.name!r}"
        )
    if root.kind != SERVER:
        result.warnings.append(f"root span {root.name!r} of {root.service} is not a SERVER span")
    _attribute(trace, root, result)
    return result


def _attribute(trace: _Trace, entry: Span, result: TraceBreakdown) -> None:
    """Charge `entry` (a server or root span) to its service, minus its outbound calls, and
    recurse into the services those calls reached."""
    service = entry.service
    calls = _outbound_calls(trace, entry)
    waiting = sum(call.duration_ns for call in calls)
    own = entry.duration_ns - waiting
    if own < 0:
        result.warnings.append(
            f"{service}: outbound calls under {entry.name!r} overlap or outlast it by "
            f"{-own} ns (concurrent calls?)"
        )
    result.charge(result.self_ns, service, own, "self")
    for call in calls:
        server = _server_of(trace, call, result)
        callee = server.service if server is not None else _peer_name(call)
        edge = edge_name(service, callee)
        result.calls[edge] = result.calls.get(edge, 0) + 1
        if server is None:
            result.unpaired[edge] = result.unpaired.get(edge, 0) + 1
            result.charge(result.remote_ns, edge, call.duration_ns, "remote")
            continue
        remote = call.duration_ns - server.duration_ns
        if remote < 0:
            result.warnings.append(_outlasts(edge, server.span_id, call.span_id, remote))
        result.charge(result.remote_ns, edge, remote, "remote")
        _add_phases(call, server, edge, result)
        _attribute(trace, server, result)


def _outbound_calls(trace: _Trace, entry: Span) -> list[Span]:
    """The outermost CLIENT spans of `entry`'s service beneath it, not crossing into spans
    of other services."""
    calls: list[Span] = []
    stack = list(trace.children.get(entry.span_id, ()))
    while stack:
        span = stack.pop()
        if span.service != entry.service:
            continue  # another service's span with no client span before it: not an edge
        if span.kind == CLIENT:
            calls.append(span)
        else:
            stack.extend(trace.children.get(span.span_id, ()))
    calls.sort(key=lambda s: (s.start_ns, s.span_id))
    return calls


def _server_of(trace: _Trace, call: Span, result: TraceBreakdown) -> Span | None:
    """The span of another service that served `call` (looking through nested client spans
    of the caller, as some libraries make)."""
    found: list[Span] = []
    stack = list(trace.children.get(call.span_id, ()))
    while stack:
        span = stack.pop()
        if span.service != call.service:
            found.append(span)
        else:
            stack.extend(trace.children.get(span.span_id, ()))
    if len(found) > 1:
        result.warnings.append(
            f"client span {call.span_id} has {len(found)} server spans; using the longest"
        )
    return max(found, key=lambda s: (s.duration_ns, s.span_id), default=None)


def _peer_name(call: Span) -> str:
    """Who an unpaired call went to, from its attributes (stable names, then old ones)."""
    for key in ("peer.service", "server.address", "net.peer.name", "http.host"):
        value = call.attributes.get(key)
        if value:
            return str(value)
    return "(untraced)"


def _add_phases(call: Span, server: Span, edge: str, result: TraceBreakdown) -> None:
    testimony = _tcp(call.attributes.get(SRTT_KEY), call.attributes.get(RETRANSMITS_KEY))
    if testimony is not None:
        result.tcp.setdefault(edge, []).append(testimony)
    testimony = _tcp(server.attributes.get(SRTT_KEY), server.attributes.get(RETRANSMITS_KEY))
    if testimony is not None:
        result.tcp_callee.setdefault(edge, []).append(testimony)
    times = {event.name: event.time_ns for event in call.events}
    connection = _connection(call.attributes.get("netgap.connection.reused"), times)
    if connection == REUSED:
        result.reused_connections[edge] = result.reused_connections.get(edge, 0) + 1
    elif connection == NEW:
        result.new_connections[edge] = result.new_connections.get(edge, 0) + 1
    parts = connection_phases(call.start_ns, call.end_ns, server.duration_ns, times)
    if parts is None:
        return
    into = result.phases_ns.setdefault(edge, dict.fromkeys(PHASES, 0))
    for phase, ns in zip(PHASES, parts, strict=True):
        into[phase] += ns


# The kernel's testimony on a CLIENT or SERVER span (tierkit.tcpinfo): srtt and what that end
# of the connection retransmitted during the exchange.
SRTT_KEY = "netgap.tcp.srtt_us"
RETRANSMITS_KEY = "netgap.tcp.retransmits"
TCP_COLUMNS = ("srtt", "retransmits")


def _tcp(srtt_us: Any, retransmits: Any) -> tuple[int, int] | None:
    """(srtt ns, retransmissions), or None unless the call carried both as integers."""
    if isinstance(srtt_us, int) and isinstance(retransmits, int):
        return srtt_us * 1000, retransmits
    return None


# What a call's connection was: reused, new, or not known.
REUSED, NEW, UNKNOWN = 1, 0, -1


def _connection(reused: Any, times: dict[str, int]) -> int:
    if reused is True:
        return REUSED
    if reused is False or "connect" in times:
        return NEW
    return UNKNOWN


def connection_phases(
    start_ns: int, end_ns: int, server_ns: int, times: dict[str, int]
) -> tuple[int, int, int, int, int] | None:
    """connect, request, waiting, response, other (PHASES), or None without the events."""
    if "request sent" not in times or "first byte" not in times or "body done" not in times:
        return None
    connected = times.get("connect", start_ns)
    sent, first, done = times["request sent"], times["first byte"], times["body done"]
    return (
        connected - start_ns,
        sent - connected,
        # the server's own time happens inside this window; what is left is the network
        # and the callee's untraced work (parsing, queueing) both ways
        first - sent - server_ns,
        done - first,
        end_ns - done,
    )


# -- the fast path: one SERVER root, one call, one server span ---------------------------------

# A span as the fast path reads it: the store's trace seq (unused), span id, parent span id,
# service, kind, start, end, and, of CLIENT spans and the spans that serve them only, what the
# breakdown needs of the rest: their call_facts (a str, written at ingest) or, stored before
# those were, the OTLP protobuf body (opentelemetry.proto.trace.v1.Span).
# Read from JSON (otlp_json.breakdowns_from_json), the facts come already parsed: Facts.
Facts = tuple[dict[str, int], dict[str, Any]]
LeanSpan = tuple[int, str, str, str, int, int, int, str | bytes | Facts | None]
PHASE_EVENTS = frozenset(("connect", "request sent", "first byte", "body done"))

_REUSED_KEY = "netgap.connection.reused"
FAST_KEYS = frozenset((_REUSED_KEY, SRTT_KEY, RETRANSMITS_KEY))


class Chain(NamedTuple):
    """The breakdown of a trace of the common shape, as break_down would give it: the root's
    service (caller) spent caller_self_ns, its one call to callee took remote_ns beyond the
    callee's server span, and the callee spent callee_self_ns (its whole server span)."""

    trace_id: str
    start_ns: int
    total_ns: int
    caller: str
    callee: str
    caller_self_ns: int
    remote_ns: int
    callee_self_ns: int
    connection: int  # REUSED, NEW or UNKNOWN
    phases_ns: tuple[int, int, int, int, int] | None  # in PHASES' order
    warnings: tuple[str, ...] = ()
    tcp: tuple[int, int] | None = None  # (srtt ns, retransmissions), as TraceBreakdown.tcp
    tcp_callee: tuple[int, int] | None = None  # as TraceBreakdown.tcp_callee

    def breakdown(self) -> TraceBreakdown:
        """The same breakdown as a TraceBreakdown."""
        edge = edge_name(self.caller, self.callee)
        result = TraceBreakdown(
            trace_id=self.trace_id,
            start_ns=self.start_ns,
            total_ns=self.total_ns,
            root_service=self.caller,
            self_ns={self.caller: self.caller_self_ns, self.callee: self.callee_self_ns},
            remote_ns={edge: self.remote_ns},
            calls={edge: 1},
            warnings=list(self.warnings),
            order=[f"{self.caller} self", f"{edge} remote", f"{self.callee} self"],
        )
        if self.phases_ns is not None:
            result.phases_ns[edge] = dict(zip(PHASES, self.phases_ns, strict=True))
        if self.connection == REUSED:
            result.reused_connections[edge] = 1
        elif self.connection == NEW:
            result.new_connections[edge] = 1
        if self.tcp is not None:
            result.tcp[edge] = [self.tcp]
        if self.tcp_callee is not None:
            result.tcp_callee[edge] = [self.tcp_callee]
        return result

    def kept(self) -> str:
        """As a store keeps it (JSON, without the trace id); from_kept reads it back."""
        return _FACTS_JSON(self[1:])

    @classmethod
    def from_kept(cls, trace_id: str, text: str) -> "Chain":
        (start, total, caller, callee, own, remote, served, connection, phases, warnings, tcp,
         tcp_callee) = json.loads(text)  # fmt: skip
        return cls(
            trace_id,
            start,
            total,
            caller,
            callee,
            own,
            remote,
            served,
            connection,
            None if phases is None else tuple(phases),
            tuple(warnings),
            None if tcp is None else tuple(tcp),
            None if tcp_callee is None else tuple(tcp_callee),
        )


def break_down_chain(trace_id: str, spans: Sequence[LeanSpan]) -> Chain | None:
    """break_down's answer for a trace of the common shape, else None (ask break_down):
    exactly one root, a SERVER span; exactly one CLIENT span in the whole trace, of the root's
    service and beneath the root through spans of that service only; exactly one span whose
    parent is that call, of another service; no data-quality warning but a server outlasting
    its client.

    `spans` are all the trace's spans, or only its roots, its CLIENT spans and their children
    (what the store reads): other spans (say the callee's internal ones) cannot change
    break_down's answer for a trace of this shape, as with no other CLIENT span there is no
    other call to charge; and without them a call that is not the root's child looks like a
    second root, so the answer is None, as it must be when the spans between cannot be
    checked. The hot path of Store.find_breakdowns: keep it lean."""
    ids: dict[str, LeanSpan] = {}
    client = None
    for span in spans:
        ids[span[1]] = span
        if span[4] == CLIENT:
            if client is not None:
                return None
            client = span
    if client is None or len(ids) != len(spans):
        return None
    call_id = client[1]
    root = server = None
    for span in spans:
        parent = span[2]
        if parent not in ids:
            if root is not None:
                return None
            root = span
        elif parent == call_id:
            if server is not None:
                return None
            server = span
    if root is None or server is None or root[4] != SERVER:
        return None
    caller = root[3]
    callee = server[3]
    if client[3] != caller or callee == caller:
        return None
    parent = client[2]
    root_id = root[1]
    if parent != root_id:  # up from the call to the root, through the root's service only
        for _ in spans:
            above = ids[parent]  # not the root: every span but the root has its parent here
            if above[3] != caller:
                return None
            parent = above[2]
            if parent == root_id:
                break
        else:
            return None  # a cycle
    total = root[6] - root[5]
    call_ns = client[6] - client[5]
    server_ns = server[6] - server[5]
    if total < call_ns or server_ns < 0:
        return None  # break_down warns of these
    times, found = _read_facts(client[7])
    served = _read_facts(server[7])[1]
    reused = found.get(_REUSED_KEY)
    remote = call_ns - server_ns
    return Chain(
        trace_id,
        root[5],
        total,
        caller,
        callee,
        total - call_ns,
        remote,
        server_ns,
        _connection(reused, times),
        connection_phases(client[5], client[6], server_ns, times),
        (_outlasts(edge_name(caller, callee), server[1], call_id, remote),) if remote < 0 else (),
        _tcp(found.get(SRTT_KEY), found.get(RETRANSMITS_KEY)),
        _tcp(served.get(SRTT_KEY), served.get(RETRANSMITS_KEY)),
    )


def _read_facts(facts: str | bytes | Facts | None) -> Facts:
    if isinstance(facts, tuple):
        return facts
    if isinstance(facts, str):
        times, found = json.loads(facts)
        return times, found
    return _facts(PbSpan.FromString(facts)) if facts else ({}, {})


def call_facts(pb: PbSpan) -> str | None:
    """What break_down_chain needs of a CLIENT span (or of the span serving one) beyond the
    columns the store keeps, as the store keeps it (JSON, written once at ingest, read without
    decoding the protobuf); None for values JSON cannot carry (bytes, say): the chain then
    decodes the body."""
    try:
        return _FACTS_JSON(_facts(pb))
    except (TypeError, ValueError):
        return None


def _facts(pb: PbSpan) -> tuple[dict[str, int], dict[str, Any]]:
    """The connection-phase events' times (the last of a repeated name kept) and the values
    of FAST_KEYS (the last of a repeated key kept, as break_down reads attributes)."""
    times = {e.name: e.time_unix_nano for e in pb.events if e.name in PHASE_EVENTS}
    found: dict[str, Any] = {}
    # The web tier sets these three last (webtier.transport): from the end, few steps.
    for kv in reversed(pb.attributes):
        if kv.key in FAST_KEYS and kv.key not in found:
            found[kv.key] = pb_value(kv.value)
            if len(found) == len(FAST_KEYS):
                break
    return times, found


_FACTS_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _outlasts(edge: str, server_span_id: str, call_span_id: str, remote: int) -> str:
    # Not possible for the exchange itself; seen on loopback by microseconds when the
    # server ends its span after the response is already out (post-send work).
    return (
        f"{edge}: server span {server_span_id} outlasts its client span "
        f"{call_span_id} by {-remote} ns (remote time < 0: the server closed its span "
        "after answering, or a clock stepped)"
    )
