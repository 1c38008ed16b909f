"""What one call's gap says, for the trace page: the kernel's testimony at both ends of its
connection, and the sentence the breakdown's diagnosis gives for it.

The diagnosis (netgap.report.diagnosis) compares a window with a baseline. One trace has no
baseline window, but its spans carry the kernel's own one: each end's `min_rtt`, the
connection's fastest round trip, is what the path costs when nothing queues on it. So the
trace is compared with that floor: remote time against one round trip at `min_rtt`, each
end's srtt against its `min_rtt`, its retransmissions against none. Same code, same words,
same thresholds as the breakdown's `--baseline`.
"""

from dataclasses import dataclass
from typing import Any

from netgap.aggregate import Aggregate
from netgap.breakdown import RETRANSMITS_KEY, SRTT_KEY, TraceBreakdown
from netgap.model import Span
from netgap.report import diagnosis

MIN_RTT_KEY = "netgap.tcp.min_rtt_us"


@dataclass(frozen=True)
class KernelEnd:
    """TCP_INFO as one end of the call's connection reported it at the end of the exchange."""

    role: str  # "caller" (the CLIENT span's) or "callee" (the span that served the call)
    service: str
    srtt_us: int
    min_rtt_us: int | None
    retransmits: int  # segments this end sent again during the exchange


def kernel_end(role: str, span: Span) -> KernelEnd | None:
    """The span's testimony, or None when it carries none (TCP_INFO off, another client)."""
    srtt, resent = span.attributes.get(SRTT_KEY), span.attributes.get(RETRANSMITS_KEY)
    if not isinstance(srtt, int) or not isinstance(resent, int):
        return None
    floor = span.attributes.get(MIN_RTT_KEY)
    return KernelEnd(role, span.service, srtt, floor if isinstance(floor, int) else None, resent)


def reading(breakdown: TraceBreakdown, edge: str, ends: list[KernelEnd]) -> str:
    """The diagnosis of `edge`'s remote time in this trace against the kernel's floor."""
    current = _remote_only(Aggregate().add_all([breakdown]).summary(), edge)
    floors = [end.min_rtt_us for end in ends if end.min_rtt_us is not None]
    floor_ns = min(floors) * 1000 if floors else 0
    baseline: dict[str, Any] = {
        "components": {f"{edge} remote": _stats(floor_ns)},
        "edges": {edge: {}},
    }
    for end in ends:
        if end.min_rtt_us is not None:
            key = "tcp" if end.role == "caller" else "tcp_callee"
            baseline["edges"][edge][key] = {
                "calls": 1,
                "srtt": _stats(end.min_rtt_us * 1000),
                "retransmits": _stats(0),
            }
    return diagnosis(current, baseline)


def _remote_only(summary: dict[str, Any], edge: str) -> dict[str, Any]:
    """The summary with only `edge`'s remote time as a component: the trace's own self times
    have no floor to be compared with."""
    name = f"{edge} remote"
    return {**summary, "components": {name: summary["components"][name]}}


def _stats(ns: int) -> dict[str, float | int]:
    return {"p50": ns, "p90": ns, "p99": ns, "max": ns, "mean": float(ns)}
