"""The store's fast path: the breakdown of a trace of the common shape, kept as one row.

Nearly every trace of a two-tier system has one shape: one SERVER root, one CLIENT call
beneath it in the root's service, one span of another service serving that call.
`break_down_chain` gives netgap.breakdown.break_down's answer for such a trace (a `Chain`) from
lean span rows rather than decoded spans, and None for any other shape (then break_down is the
answer). `call_facts` is what it needs of a CLIENT span (or of the span serving one) beyond
the store's columns, written once at ingest. The api_v3 reader (netgap.otlp_fast) builds the
same lean rows from JSON and asks the same question.
"""

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.breakdown import (
    NEW,
    PHASES,
    RETRANSMITS_KEY,
    REUSED,
    REUSED_KEY,
    SRTT_KEY,
    TraceBreakdown,
    connection_kind,
    connection_phases,
    edge_name,
    outlasts_warning,
    tcp_testimony,
)
from netgap.model import CLIENT, SERVER
from netgap.otlp_proto import value as pb_value

# A span as the fast path reads it: the store's trace seq (unused), span id, parent span id,
# service, kind, start, end, and, of CLIENT spans and the spans that serve them only, what the
# breakdown needs of the rest: their call_facts (a str, written at ingest) or, stored before
# those were, the OTLP protobuf body (opentelemetry.proto.trace.v1.Span).
# Read from JSON (otlp_fast.breakdowns_from_json), the facts come already parsed: Facts.
Facts = tuple[dict[str, int], dict[str, Any]]
LeanSpan = tuple[int, str, str, str, int, int, int, str | bytes | Facts | None]
PHASE_EVENTS = frozenset(("connect", "request sent", "first byte", "body done"))
FAST_KEYS = frozenset((REUSED_KEY, SRTT_KEY, RETRANSMITS_KEY))


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
    shape = _chain_shape(spans)
    if shape is None:
        return None
    root, client, server = shape
    total = root[6] - root[5]
    call_ns = client[6] - client[5]
    server_ns = server[6] - server[5]
    if total < call_ns or server_ns < 0:
        return None  # break_down warns of these
    times, found = _read_facts(client[7])
    served = _read_facts(server[7])[1]
    caller, callee = root[3], server[3]
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
        connection_kind(found.get(REUSED_KEY), times),
        connection_phases(client[5], client[6], server_ns, times),
        (outlasts_warning(edge_name(caller, callee), server[1], client[1], remote),)
        if remote < 0
        else (),
        tcp_testimony(found.get(SRTT_KEY), found.get(RETRANSMITS_KEY)),
        tcp_testimony(served.get(SRTT_KEY), served.get(RETRANSMITS_KEY)),
    )


def _chain_shape(spans: Sequence[LeanSpan]) -> tuple[LeanSpan, LeanSpan, LeanSpan] | None:
    """(root, call, server) of a trace of the common shape, else None."""
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
    ends = _root_and_server(spans, ids, client[1])
    if ends is None:
        return None
    root, server = ends
    if root[4] != SERVER or client[3] != root[3] or server[3] == root[3]:
        return None
    if not _beneath_in_service(ids, client, root[1], len(spans)):
        return None
    return root, client, server


def _root_and_server(
    spans: Sequence[LeanSpan], ids: dict[str, LeanSpan], call_id: str
) -> tuple[LeanSpan, LeanSpan] | None:
    """The one span without a parent here and the one child of the call, else None."""
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
    if root is None or server is None:
        return None
    return root, server


def _beneath_in_service(ids: dict[str, LeanSpan], call: LeanSpan, root_id: str, hops: int) -> bool:
    """Whether the way up from the call to the root goes through the caller's spans only
    (in at most `hops` steps: more is a cycle)."""
    parent = call[2]
    if parent == root_id:
        return True
    caller = call[3]
    for _ in range(hops):
        above = ids[parent]  # not the root: every span but the root has its parent here
        if above[3] != caller:
            return False
        parent = above[2]
        if parent == root_id:
            return True
    return False  # a cycle


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
