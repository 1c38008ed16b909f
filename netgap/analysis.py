"""The breakdown pipeline: read traces from a source, break each one down, sum them up.

A `TraceSource` is where breakdowns come from: Jaeger's query API v3 (netgap.trace_source,
a Jaeger 2.x or `netgap collect`) or the SQLite store of a `netgap collect` on this machine
(netgap.collector.store, its lean read); both give the same numbers. `breakdown_report` turns
a window of one into a typed report (`BreakdownReport`), whose `as_json` is what
`netgap breakdown --json` prints. Commands, the scenario, the demo and the bench call this
module; it calls the sources, never the other way.
"""

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from netgap.aggregate import Aggregate
from netgap.breakdown import TraceBreakdown
from netgap.collector.chains import Chain
from netgap.collector.store import Store
from netgap.errors import UsageError
from netgap.metric_source import agreement
from netgap.report import diagnosis
from netgap.summary import BreakdownSummary
from netgap.timeparse import time_arg
from netgap.trace_source import JaegerQuery


class TraceSource(Protocol):
    """Where the traces are read from; a context manager that closes it."""

    @property
    def location(self) -> str:
        """The source as a report names it: a URL, or the store's file."""
        ...

    def breakdowns(
        self, service: str, start_ns: int, end_ns: int, *, limit: int | None = None
    ) -> Iterable[TraceBreakdown | Chain]:
        """The breakdown of each trace with a span of `service` starting in [start_ns,
        end_ns), the earliest-starting first (`limit`: at most that many)."""
        ...

    def __enter__(self) -> "TraceSource": ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_trace_source(url: str, store: Path | None = None) -> TraceSource:
    """The store at `store` (a `netgap collect --db` file) when given, else the query API at
    `url`."""
    if store is None:
        return JaegerQuery(url)
    if not store.is_file():
        raise UsageError(f"--store {store}: no such file (the --db of `netgap collect`)")
    return Store(store)


@dataclass(frozen=True)
class Baseline:
    """The window a report is compared with: its bounds and where it was read."""

    start_ns: int
    end_ns: int
    source: str


@dataclass
class BreakdownReport:
    """`netgap breakdown`'s report; `as_json` gives its --json, key for key."""

    source: str
    service: str
    start_ns: int
    end_ns: int
    bucket_ns: int | None
    summary: BreakdownSummary
    baseline: Baseline | None = None
    diagnosis: str | None = None
    metric: dict[str, Any] | None = None  # netgap.metric_source.metric_report's

    def compare(self, baseline: dict[str, Any]) -> None:
        """Notes `baseline` (a report's JSON) and what moved since, in words."""
        self.baseline = Baseline(baseline["start_ns"], baseline["end_ns"], baseline["source"])
        self.diagnosis = diagnosis(self.summary.as_json(), baseline["summary"])

    def add_metric(self, metric: dict[str, Any]) -> None:
        """Adds the metric's report (metric_source.metric_report), with where it and the
        traces disagree."""
        metric["disagreements"] = agreement(metric, self.summary.as_json())
        self.metric = metric

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "service": self.service,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "bucket_ns": self.bucket_ns,
            "summary": self.summary.as_json(),
        }
        if self.baseline is not None:
            out["baseline"] = {
                "start_ns": self.baseline.start_ns,
                "end_ns": self.baseline.end_ns,
                "source": self.baseline.source,
            }
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis
        if self.metric is not None:
            out["metric"] = self.metric
        return out


def breakdown_report(
    source: TraceSource,
    service: str,
    start_ns: int,
    end_ns: int,
    bucket_ns: int | None = None,
    limit: int | None = None,
) -> BreakdownReport:
    """The report of the traces with a span of `service` starting in [start_ns, end_ns), the
    earliest-starting first (`limit`: at most that many), read over the query API or, from a
    local Store, with its lean read (Store.find_breakdowns): the same numbers either way."""
    aggregate = Aggregate(bucket_ns)
    aggregate.add_all(source.breakdowns(service, start_ns, end_ns, limit=limit))
    return BreakdownReport(
        source.location, service, start_ns, end_ns, bucket_ns, aggregate.breakdown_summary()
    )


def build_report(
    source: TraceSource,
    service: str,
    start_ns: int,
    end_ns: int,
    bucket_ns: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """breakdown_report's report as its JSON (what `--json` prints)."""
    return breakdown_report(source, service, start_ns, end_ns, bucket_ns, limit).as_json()


def baseline_report(
    source: TraceSource, text: str, service: str, limit: int | None
) -> dict[str, Any]:
    """The report `--baseline TEXT` names, as JSON: an earlier window START..END of `source`,
    or a report saved with --json."""
    if ".." in text and not Path(text).exists():
        lo, _, hi = text.partition("..")
        try:
            start_ns, end_ns = time_arg(lo), time_arg(hi)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--baseline {text}: {exc}") from None
        if start_ns >= end_ns:
            raise UsageError(f"--baseline {text}: the start must be before the end")
        return build_report(source, service, start_ns, end_ns, None, limit)
    try:
        saved = json.loads(Path(text).read_text())
    except OSError as exc:
        raise UsageError(f"--baseline {text}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise UsageError(f"--baseline {text}: not a JSON report of netgap breakdown") from None
    if not isinstance(saved, dict) or "summary" not in saved:
        raise UsageError(f"--baseline {text}: not a JSON report of netgap breakdown --json")
    return saved
