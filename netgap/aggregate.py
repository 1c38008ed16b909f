"""Breakdowns of many traces, summed up: percentiles of per-trace values (never subtracted
percentiles), means (which do add up), per-edge connection facts, and a time series.

Memory is a few integers per trace and component, whatever the traces' size, so 100 000+
traces aggregate comfortably.
"""

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netgap.breakdown import PHASES, TraceBreakdown

QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
TOTAL = "total"
_MAX_WARNING_EXAMPLES = 5


def quantile(sorted_values: "array[int] | list[int]", q: float) -> int:
    """Nearest-rank quantile: always one of the values, so integer inputs stay exact."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class _Columns:
    """Per-trace values of named components; a component a trace lacks counts as 0 there."""

    def __init__(self) -> None:
        self.count = 0
        self.values: dict[str, array[int]] = {}

    def add(self, parts: dict[str, int]) -> None:
        for name in parts:
            if name not in self.values:
                self.values[name] = array("q", bytes(8 * self.count))
        for name, column in self.values.items():
            column.append(parts.get(name, 0))
        self.count += 1

    def stats(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for name, column in self.values.items():
            ordered = sorted(column)
            out[name] = {key: quantile(ordered, q) for key, q in QUANTILES.items()}
            out[name]["max"] = ordered[-1] if ordered else 0
            out[name]["mean"] = sum(ordered) / len(ordered) if ordered else 0.0
        return out


@dataclass
class _Edge:
    calls: int = 0
    unpaired: int = 0
    new_connections: int = 0
    reused_connections: int = 0
    phases: _Columns = field(default_factory=_Columns)


class Aggregate:
    def __init__(self, bucket_ns: int | None = None) -> None:
        self.bucket_ns = bucket_ns
        self.traces = 0
        self.first_start_ns: int | None = None
        self.last_start_ns: int | None = None
        self.columns = _Columns()
        self.buckets: dict[int, _Columns] = {}
        self.edges: dict[str, _Edge] = {}
        self.identity_violations = 0
        self.warning_counts: Counter[str] = Counter()
        self.warning_examples: list[str] = []
        self.traces_with_warnings = 0

    def add_all(self, breakdowns: Iterable[TraceBreakdown]) -> "Aggregate":
        for breakdown in breakdowns:
            self.add(breakdown)
        return self

    def add(self, b: TraceBreakdown) -> None:
        parts = b.components()
        if sum(parts.values()) != b.total_ns:
            self.identity_violations += 1  # cannot happen by construction; checked anyway
        parts[TOTAL] = b.total_ns
        self.traces += 1
        self.first_start_ns = min(self.first_start_ns or b.start_ns, b.start_ns)
        self.last_start_ns = max(self.last_start_ns or b.start_ns, b.start_ns)
        self.columns.add(parts)
        if self.bucket_ns:
            bucket = b.start_ns - b.start_ns % self.bucket_ns
            self.buckets.setdefault(bucket, _Columns()).add(parts)
        for name in b.calls:
            edge = self.edges.setdefault(name, _Edge())
            edge.calls += b.calls[name]
            edge.unpaired += b.unpaired.get(name, 0)
            edge.new_connections += b.new_connections.get(name, 0)
            edge.reused_connections += b.reused_connections.get(name, 0)
            if name in b.phases_ns:
                edge.phases.add(b.phases_ns[name])
        if b.warnings:
            self.traces_with_warnings += 1
            for warning in b.warnings:
                self.warning_counts[_warning_kind(warning)] += 1
                if len(self.warning_examples) < _MAX_WARNING_EXAMPLES:
                    self.warning_examples.append(f"trace {b.trace_id}: {warning}")

    def summary(self) -> dict[str, Any]:
        """Everything the report shows, in integer nanoseconds (means as floats)."""
        return {
            "traces": self.traces,
            "first_trace_start_ns": self.first_start_ns,
            "last_trace_start_ns": self.last_start_ns,
            "components": _ordered(self.columns.stats()),
            "edges": {
                name: {
                    "calls": edge.calls,
                    "unpaired": edge.unpaired,
                    "new_connections": edge.new_connections,
                    "reused_connections": edge.reused_connections,
                    "phases": {
                        phase: stats
                        for phase, stats in edge.phases.stats().items()
                        if phase in PHASES
                    },
                }
                for name, edge in sorted(self.edges.items())
            },
            "buckets": [
                {
                    "start_ns": start,
                    "traces": columns.count,
                    "components": _ordered(columns.stats()),
                }
                for start, columns in sorted(self.buckets.items())
            ],
            "identity_violations": self.identity_violations,
            "data_quality": {
                "traces_with_warnings": self.traces_with_warnings,
                "by_kind": dict(self.warning_counts),
                "examples": self.warning_examples,
            },
        }


def _ordered(stats: dict[str, dict[str, float | int]]) -> dict[str, dict[str, float | int]]:
    """total first, then the components in the order requests met them."""
    return {TOTAL: stats[TOTAL], **{k: v for k, v in stats.items() if k != TOTAL}} if stats else {}


def _warning_kind(warning: str) -> str:
    kinds = {
        "outlasts": "server outlasts client",
        "overlap": "overlapping calls",
        "root spans": "several roots",
        "not a SERVER": "root not a server span",
        "server spans": "several servers for one call",
    }
    return next((kind for key, kind in kinds.items() if key in warning), "other")
