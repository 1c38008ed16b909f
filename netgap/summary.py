"""The breakdown summary: what netgap.aggregate.Aggregate sums many traces' breakdowns up to,
typed, and `as_json` for each part, the shape `netgap breakdown --json` prints (and reports
saved with it are read back as). Times are integer nanoseconds; means are floats.
"""

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Stats:
    """One component's per-trace values: nearest-rank percentiles, max, mean."""

    p50: int
    p90: int
    p99: int
    max: int
    mean: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


def stats_json(stats: dict[str, Stats]) -> Json:
    return {name: s.as_json() for name, s in stats.items()}


@dataclass(frozen=True)
class Testimony:
    """The kernel's testimony (TCP_INFO) at one end of an edge: srtt (ns) and segments
    retransmitted, per call that carried it."""

    calls: int
    srtt: Stats
    retransmits: Stats

    def as_json(self) -> Json:
        return {
            "calls": self.calls,
            "srtt": self.srtt.as_json(),
            "retransmits": self.retransmits.as_json(),
        }


def _testimony_json(testimony: Testimony | None) -> Json:
    return {} if testimony is None else testimony.as_json()


@dataclass(frozen=True)
class EdgeTestimony:
    """An edge's testimony at the caller's end (tcp) and the callee's (tcp_callee); None for
    an end with none."""

    tcp: Testimony | None = None
    tcp_callee: Testimony | None = None

    def as_json(self) -> Json:
        return {"tcp": _testimony_json(self.tcp), "tcp_callee": _testimony_json(self.tcp_callee)}


@dataclass(frozen=True)
class EdgeSummary:
    """One edge (caller->callee): its calls, how their connections went, the connection
    phases of the calls that carried them, the kernel's testimony."""

    calls: int
    unpaired: int
    new_connections: int
    reused_connections: int
    phases: dict[str, Stats]
    testimony: EdgeTestimony

    def as_json(self) -> Json:
        return {
            "calls": self.calls,
            "unpaired": self.unpaired,
            "new_connections": self.new_connections,
            "reused_connections": self.reused_connections,
            "phases": stats_json(self.phases),
            **self.testimony.as_json(),
        }


@dataclass(frozen=True)
class BucketSummary:
    """One time bucket of the series: the traces that started in it."""

    start_ns: int
    traces: int
    components: dict[str, Stats]
    edges: dict[str, EdgeTestimony]  # the edges with TCP_INFO in the bucket

    def as_json(self) -> Json:
        return {
            "start_ns": self.start_ns,
            "traces": self.traces,
            "components": stats_json(self.components),
            "edges": {name: t.as_json() for name, t in self.edges.items()},
        }


@dataclass(frozen=True)
class DataQuality:
    traces_with_warnings: int
    by_kind: dict[str, int]
    examples: list[str]

    def as_json(self) -> Json:
        return {
            "traces_with_warnings": self.traces_with_warnings,
            "by_kind": dict(self.by_kind),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class BreakdownSummary:
    """Everything the report shows of many traces. `components`: total first, then each
    component in the order requests met them."""

    traces: int
    first_trace_start_ns: int | None
    last_trace_start_ns: int | None
    components: dict[str, Stats]
    edges: dict[str, EdgeSummary]
    buckets: list[BucketSummary]
    identity_violations: int
    data_quality: DataQuality = field(default_factory=lambda: DataQuality(0, {}, []))

    def as_json(self) -> Json:
        return {
            "traces": self.traces,
            "first_trace_start_ns": self.first_trace_start_ns,
            "last_trace_start_ns": self.last_trace_start_ns,
            "components": stats_json(self.components),
            "edges": {name: edge.as_json() for name, edge in self.edges.items()},
            "buckets": [bucket.as_json() for bucket in self.buckets],
            "identity_violations": self.identity_violations,
            "data_quality": self.data_quality.as_json(),
        }
