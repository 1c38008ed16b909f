"""Breakdowns of many traces, summed up: percentiles of per-trace values (never subtracted
percentiles), means (which do add up), per-edge connection facts, and a time series.

Memory is a few integers per trace and component, whatever the traces' size, so 100 000+
traces aggregate comfortably.
"""

import functools
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netgap.breakdown import NEW, PHASES, REUSED, TCP_COLUMNS, TraceBreakdown, edge_name
from netgap.collector.chains import Chain
from netgap.summary import (
    BreakdownSummary,
    BucketSummary,
    DataQuality,
    EdgeSummary,
    EdgeTestimony,
    Stats,
    Testimony,
)

_NUMPY_FROM = 256  # values in a column before numpy sorts it

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
        # names -> their columns' appends, for rows that name every column (add_row)
        self._appends: dict[tuple[str, ...], list[Callable[[int], None]]] = {}

    def add(self, parts: dict[str, int]) -> None:
        for name in parts:
            if name not in self.values:
                self.values[name] = array("q", bytes(8 * self.count))
                self._appends.clear()
        for name, column in self.values.items():
            column.append(parts.get(name, 0))
        self.count += 1

    def appends(self, names: tuple[str, ...]) -> list[Callable[[int], None]] | None:
        """The appends of the columns `names` (distinct) when they are all the columns there
        are, in that order; else None."""
        appends = self._appends.get(names)
        if appends is None:
            if len(names) != len(self.values) or not all(n in self.values for n in names):
                return None
            appends = self._appends[names] = [self.values[name].append for name in names]
        return appends

    def add_row(self, names: tuple[str, ...], row: Sequence[int]) -> None:
        """As add(dict(zip(names, row))), with distinct names; fast when they are the columns
        there are."""
        appends = self.appends(names)
        if appends is None:
            self.add(dict(zip(names, row, strict=True)))
            return
        for append, ns in zip(appends, row, strict=True):
            append(ns)
        self.count += 1

    def stats(self) -> dict[str, Stats]:
        return {name: _stats(column) for name, column in self.values.items()}


@functools.cache
def _numpy() -> Any:
    """numpy, or None: netgap's dependencies leave it out (the plot extra brings it)."""
    try:
        import numpy  # only when a long column is summed up

        return numpy
    except ImportError:  # pragma: no cover - depends on the installation
        return None


def _stats(column: "array[int]") -> Stats:
    """The quantiles, max and mean of one column (numpy sorts a long one, when installed;
    the numbers are the same either way)."""
    count = len(column)
    np = _numpy() if count >= _NUMPY_FROM else None
    if np is None:
        ordered = sorted(column)
        p50, p90, p99 = (quantile(ordered, q) for q in QUANTILES.values())
        return Stats(
            p50, p90, p99, ordered[-1] if ordered else 0, sum(ordered) / count if ordered else 0.0
        )
    values = np.sort(np.frombuffer(column.tobytes(), dtype=np.int64))
    p50, p90, p99 = (int(values[max(1, math.ceil(q * count)) - 1]) for q in QUANTILES.values())
    low, high = int(values[0]), int(values[-1])
    # int64 sums exactly while no partial sum can pass 2**63; else Python's sum
    total = int(values.sum()) if max(-low, high) < 2**63 // count else sum(column)
    return Stats(p50, p90, p99, high, total / count)


@dataclass
class _Testimony:
    """The kernel's testimony on an edge, TCP_COLUMNS per call that carried it: at the
    caller's end of the connection and at the callee's."""

    caller: _Columns = field(default_factory=_Columns)
    callee: _Columns = field(default_factory=_Columns)

    def add(self, caller: Iterable[tuple[int, int]], callee: Iterable[tuple[int, int]]) -> None:
        for row in caller:
            self.caller.add_row(TCP_COLUMNS, row)
        for row in callee:
            self.callee.add_row(TCP_COLUMNS, row)

    def summary(self) -> EdgeTestimony:
        """srtt (ns) and retransmissions per call at each end (None for an end with none)."""
        return EdgeTestimony(_testimony(self.caller), _testimony(self.callee))


def _testimony(columns: _Columns) -> Testimony | None:
    if not columns.count:
        return None
    stats = columns.stats()
    return Testimony(columns.count, *(stats[name] for name in TCP_COLUMNS))


@dataclass
class _Edge:
    calls: int = 0
    unpaired: int = 0
    new_connections: int = 0
    reused_connections: int = 0
    phases: _Columns = field(default_factory=_Columns)
    tcp: _Testimony = field(default_factory=_Testimony)


class Aggregate:
    def __init__(self, bucket_ns: int | None = None) -> None:
        self.bucket_ns = bucket_ns
        self.traces = 0
        self.first_start_ns: int | None = None
        self.last_start_ns: int | None = None
        self.columns = _Columns()
        self.buckets: dict[int, _Columns] = {}
        self.bucket_tcp: dict[int, dict[str, _Testimony]] = {}  # bucket -> edge -> testimony
        self.edges: dict[str, _Edge] = {}
        self.identity_violations = 0
        self.warning_counts: Counter[str] = Counter()
        self.warning_examples: list[str] = []
        self.traces_with_warnings = 0
        # (caller, callee) -> a Chain's column names and edge, made once
        self._chain_names: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}

    def add_all(self, breakdowns: Iterable[TraceBreakdown | Chain]) -> "Aggregate":
        for breakdown in breakdowns:
            self.add(breakdown)
        return self

    def add(self, b: TraceBreakdown | Chain) -> None:
        if isinstance(b, Chain):
            self._add_chain(b)
            return
        parts = b.components()
        if sum(parts.values()) != b.total_ns:
            self.identity_violations += 1  # cannot happen by construction; checked anyway
        parts[TOTAL] = b.total_ns
        self.traces += 1
        self.first_start_ns = min(self.first_start_ns or b.start_ns, b.start_ns)
        self.last_start_ns = max(self.last_start_ns or b.start_ns, b.start_ns)
        self.columns.add(parts)
        bucket = None
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
            at_caller, at_callee = b.tcp.get(name, ()), b.tcp_callee.get(name, ())
            if at_caller or at_callee:
                edge.tcp.add(at_caller, at_callee)
                if bucket is not None:
                    self._bucket_testimony(bucket, name).add(at_caller, at_callee)
        if b.warnings:
            self._note_warnings(b.trace_id, b.warnings)

    def _add_chain(self, c: Chain) -> None:
        """As add(c.breakdown()), without building it."""
        (trace_id, start, total, caller, callee, own, remote, served, connection, phases, warn,
         tcp, tcp_callee) = c  # fmt: skip
        columns, edge = self._chain_columns(caller, callee)
        if own + remote + served != total:
            self.identity_violations += 1  # cannot happen by construction; checked anyway
        self._count_start(start)
        row = (own, remote, served, total)
        self._add_row(columns, row)
        bucket = None
        if self.bucket_ns:
            bucket = start - start % self.bucket_ns
            self.buckets.setdefault(bucket, _Columns()).add_row(columns, row)
        facts = self.edges.get(edge)
        if facts is None:
            facts = self.edges[edge] = _Edge()
        facts.calls += 1
        if connection == REUSED:
            facts.reused_connections += 1
        elif connection == NEW:
            facts.new_connections += 1
        if phases is not None:
            facts.phases.add_row(PHASES, phases)
        if tcp is not None or tcp_callee is not None:
            at_caller = () if tcp is None else (tcp,)
            at_callee = () if tcp_callee is None else (tcp_callee,)
            facts.tcp.add(at_caller, at_callee)
            if bucket is not None:
                self._bucket_testimony(bucket, edge).add(at_caller, at_callee)
        if warn:
            self._note_warnings(trace_id, warn)

    def _chain_columns(self, caller: str, callee: str) -> tuple[tuple[str, ...], str]:
        """A Chain's column names (caller self, edge remote, callee self, total) and edge."""
        names = self._chain_names.get((caller, callee))
        if names is None:
            edge = edge_name(caller, callee)
            columns: tuple[str, ...] = (f"{caller} self", f"{edge} remote", f"{callee} self", TOTAL)
            names = self._chain_names[(caller, callee)] = (columns, edge)
        return names

    def _count_start(self, start: int) -> None:
        """One trace more, starting at `start` (as add's min(first or start, start), max)."""
        self.traces += 1
        first = self.first_start_ns
        if not first or start < first:
            self.first_start_ns = start
        last = self.last_start_ns
        if not last or start > last:
            self.last_start_ns = start

    def _add_row(self, columns: tuple[str, ...], row: tuple[int, int, int, int]) -> None:
        appends = self.columns.appends(columns)
        if appends is None:
            self.columns.add_row(columns, row)
            return
        # add_row, unrolled: the hot path of a store's breakdown
        appends[0](row[0])
        appends[1](row[1])
        appends[2](row[2])
        appends[3](row[3])
        self.columns.count += 1

    def _note_warnings(self, trace_id: str, warnings: Iterable[str]) -> None:
        self.traces_with_warnings += 1
        for warning in warnings:
            self.warning_counts[_warning_kind(warning)] += 1
            if len(self.warning_examples) < _MAX_WARNING_EXAMPLES:
                self.warning_examples.append(f"trace {trace_id}: {warning}")

    def _bucket_testimony(self, bucket: int, edge: str) -> _Testimony:
        edges = self.bucket_tcp.setdefault(bucket, {})
        testimony = edges.get(edge)
        if testimony is None:
            testimony = edges[edge] = _Testimony()
        return testimony

    def summary(self) -> dict[str, Any]:
        """Everything the report shows, as its JSON: breakdown_summary().as_json()."""
        return self.breakdown_summary().as_json()

    def breakdown_summary(self) -> BreakdownSummary:
        """Everything the report shows, in integer nanoseconds (means as floats)."""
        return BreakdownSummary(
            traces=self.traces,
            first_trace_start_ns=self.first_start_ns,
            last_trace_start_ns=self.last_start_ns,
            components=_ordered(self.columns.stats()),
            edges={name: _edge_summary(edge) for name, edge in sorted(self.edges.items())},
            buckets=[
                BucketSummary(
                    start,
                    columns.count,
                    _ordered(columns.stats()),
                    # per edge with TCP_INFO in the bucket: as the edges' testimony
                    {
                        name: testimony.summary()
                        for name, testimony in sorted(self.bucket_tcp.get(start, {}).items())
                    },
                )
                for start, columns in sorted(self.buckets.items())
            ],
            identity_violations=self.identity_violations,
            data_quality=DataQuality(
                self.traces_with_warnings, dict(self.warning_counts), self.warning_examples
            ),
        )


def _edge_summary(edge: _Edge) -> EdgeSummary:
    return EdgeSummary(
        calls=edge.calls,
        unpaired=edge.unpaired,
        new_connections=edge.new_connections,
        reused_connections=edge.reused_connections,
        phases={phase: stats for phase, stats in edge.phases.stats().items() if phase in PHASES},
        # srtt (ns) and retransmissions per call at each end, of the calls with TCP_INFO
        testimony=edge.tcp.summary(),
    )


def _ordered(stats: dict[str, Stats]) -> dict[str, Stats]:
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
