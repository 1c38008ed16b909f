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

`break_down` takes any trace. The store's fast path for the common shape
(netgap.collector.chains) gives the same answer from lean rows, with the pieces below
(connection_phases, tcp_testimony, connection_kind, outlasts_warning) that both share. This
module imports nothing of netgap's but the span model: the store and the analysis both
import it, as they import netgap.model.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
            result.warnings.append(outlasts_warning(edge, server.span_id, call.span_id, remote))
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
    testimony = tcp_testimony(call.attributes.get(SRTT_KEY), call.attributes.get(RETRANSMITS_KEY))
    if testimony is not None:
        result.tcp.setdefault(edge, []).append(testimony)
    testimony = tcp_testimony(
        server.attributes.get(SRTT_KEY), server.attributes.get(RETRANSMITS_KEY)
    )
    if testimony is not None:
        result.tcp_callee.setdefault(edge, []).append(testimony)
    times = {event.name: event.time_ns for event in call.events}
    connection = connection_kind(call.attributes.get(REUSED_KEY), times)
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


def tcp_testimony(srtt_us: Any, retransmits: Any) -> tuple[int, int] | None:
    """(srtt ns, retransmissions), or None unless the call carried both as integers."""
    if isinstance(srtt_us, int) and isinstance(retransmits, int):
        return srtt_us * 1000, retransmits
    return None


# What a call's connection was: reused, new, or not known; the web tier says on its CLIENT span.
REUSED, NEW, UNKNOWN = 1, 0, -1
REUSED_KEY = "netgap.connection.reused"


def connection_kind(reused: Any, times: dict[str, int]) -> int:
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


def outlasts_warning(edge: str, server_span_id: str, call_span_id: str, remote: int) -> str:
    # Not possible for the exchange itself; seen on loopback by microseconds when the
    # server ends its span after the response is already out (post-send work).
    return (
        f"{edge}: server span {server_span_id} outlasts its client span "
        f"{call_span_id} by {-remote} ns (remote time < 0: the server closed its span "
        "after answering, or a clock stepped)"
    )
