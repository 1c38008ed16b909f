"""Split each request's time into web, remote calls and API, per trace and over time.

Reads traces over Jaeger's query API v3 (a Jaeger 2.x, or `netgap collect`) for a service and
a window, or straight from the SQLite file of a `netgap collect` on this machine (--store, much
faster: only the columns a breakdown needs are read), and reports per component (each
service's self time, each edge's remote time) the p50/p90/p99/max of per-trace values,
exactly: per trace, total = selves + remotes.

  netgap breakdown --since 15m
  netgap breakdown --since 15m --store .netgap/traces.db
  netgap breakdown --since 5m --bucket 10s --plot breakdown.png
  netgap breakdown --since 5m --baseline before.json      # what moved, in words
  netgap breakdown --start 2026-11-25T12:00:00Z --end 2026-11-25T12:15:00Z --json

With a second --source naming a metrics source, the web tier's netgap_remote_seconds (every
call, sampled or not) is reported beside the traces, and where the two disagree it says so:

  netgap breakdown --since 5m --source metrics+http://127.0.0.1:8800/metrics
  netgap breakdown --since 5m --store .netgap/traces.db --source prometheus+http://prom:9090
"""

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from netgap.aggregate import Aggregate
from netgap.argtypes import positive_int
from netgap.breakdown import Chain, TraceBreakdown
from netgap.collector.store import Store, TraceQuery
from netgap.errors import UsageError
from netgap.metric_source import agreement, is_metric_source, metric_report, open_metric_source
from netgap.report import csv_text, diagnosis, metric_lines, plot, table
from netgap.timeparse import duration_arg, time_arg
from netgap.trace_source import DEFAULT_SOURCE, JaegerQuery


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        metavar="URL",
        help=f"the traces' query API base URL ({DEFAULT_SOURCE}); or, given again, a metrics "
        "source: metrics+http://TIER:PORT/metrics (a tier's own, since it started) or "
        "prometheus+http://HOST:9090 (a Prometheus query API, the window)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="FILE.db",
        help="read the trace store of a `netgap collect` on this machine (its --db) instead",
    )
    parser.add_argument("--service", default="webtier", help="the entry service (webtier)")
    window = parser.add_argument_group("window (default: the last 15 minutes)")
    window.add_argument("--since", type=duration_arg, help="the last DURATION, e.g. 15m")
    window.add_argument("--start", type=time_arg, help="RFC 3339 time, or relative like -30m")
    window.add_argument("--end", type=time_arg, help="RFC 3339 time, or relative (default now)")
    parser.add_argument("--limit", type=positive_int, help="read at most N traces")
    parser.add_argument("--bucket", type=duration_arg, help="also a time series, e.g. 10s")
    parser.add_argument(
        "--baseline",
        help="a saved --json report, or an earlier window START..END (e.g. -30m..-15m)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--csv", action="store_true", help="print the report as CSV")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="write a stacked-area plot")


def run(args: argparse.Namespace) -> int:
    start_ns, end_ns = _window(args)
    trace_url, metric_url = _sources(args)
    metric_only = metric_url is not None and trace_url is None and args.store is None
    if metric_only:
        for flag in ("csv", "plot", "baseline", "bucket"):
            if getattr(args, flag):
                raise UsageError(f"--{flag} needs traces: add a trace --source or --store")
    metric = metric_report(open_metric_source(metric_url), start_ns, end_ns) if metric_url else None
    if metric is not None and metric_only:
        return _metric_only(args, metric, start_ns, end_ns)
    bucket_ns = args.bucket or (
        max((end_ns - start_ns) // 60, 1_000_000_000) if args.plot else None
    )
    with _open_source(args, trace_url or DEFAULT_SOURCE) as source:
        report = build_report(source, args.service, start_ns, end_ns, bucket_ns, args.limit)
        if args.baseline:
            baseline = _baseline(source, args)
            report["baseline"] = {k: baseline[k] for k in ("start_ns", "end_ns", "source")}
            report["diagnosis"] = diagnosis(report["summary"], baseline["summary"])
    if metric is not None:
        metric["disagreements"] = agreement(metric, report["summary"])
        report["metric"] = metric
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.csv:
        sys.stdout.write(csv_text(report))
    else:
        print(table(report))
        if args.plot:
            print(f"\nplot written to {args.plot}")
    return 0


def _sources(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The trace source's URL (None: --store, or none at all) and the metric source's."""
    given: list[str] = args.source or []
    metrics = [url for url in given if is_metric_source(url)]
    traces = [url for url in given if not is_metric_source(url)]
    if len(traces) > 1 or len(metrics) > 1:
        raise UsageError(
            "--source: one trace source and one metrics source at most, got " + " ".join(given)
        )
    if traces and args.store is not None:
        raise UsageError(f"--source {traces[0]} and --store both name the traces: pick one")
    return (traces[0] if traces else None), (metrics[0] if metrics else None)


def _metric_only(
    args: argparse.Namespace, metric: dict[str, Any], start_ns: int, end_ns: int
) -> int:
    report = {"service": args.service, "start_ns": start_ns, "end_ns": end_ns, "metric": metric}
    print(json.dumps(report, indent=2) if args.json else "\n".join(metric_lines(metric)))
    return 0


def _open_source(args: argparse.Namespace, url: str) -> JaegerQuery | Store:
    if args.store is None:
        return JaegerQuery(url)
    if not args.store.is_file():
        raise UsageError(f"--store {args.store}: no such file (the --db of `netgap collect`)")
    return Store(args.store)


def build_report(
    source: JaegerQuery | Store,
    service: str,
    start_ns: int,
    end_ns: int,
    bucket_ns: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The report of the traces with a span of `service` starting in [start_ns, end_ns), the
    earliest-starting first (`limit`: at most that many), read over the query API or, from a
    local Store, with its lean read (Store.find_breakdowns): the same numbers either way."""
    aggregate = Aggregate(bucket_ns)
    aggregate.add_all(breakdowns(source, service, start_ns, end_ns, limit))
    return {
        "source": source.base_url if isinstance(source, JaegerQuery) else str(source.path),
        "service": service,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "bucket_ns": bucket_ns,
        "summary": aggregate.summary(),
    }


def breakdowns(
    source: JaegerQuery | Store,
    service: str,
    start_ns: int,
    end_ns: int,
    limit: int | None = None,
) -> Iterable[TraceBreakdown | Chain]:
    """The breakdown of every trace build_report reports on, in the order it adds them."""
    if isinstance(source, Store):
        query = TraceQuery(
            start_min_ns=start_ns,
            start_max_ns=end_ns,
            service=service,
            limit=_UNLIMITED if limit is None else limit,
        )
        return source.find_breakdowns(query, oldest_first=True)
    return source.breakdowns(service, start_ns, end_ns, limit=limit)


_UNLIMITED = 2**62


def _window(args: argparse.Namespace) -> tuple[int, int]:
    if args.since and (args.start or args.end):
        raise UsageError("--since cannot be combined with --start/--end")
    end_ns = args.end or time.time_ns()
    start_ns = args.start or end_ns - (args.since or 15 * 60 * 1_000_000_000)
    if start_ns >= end_ns:
        raise UsageError("--start must be before --end")
    return start_ns, end_ns


def _baseline(source: JaegerQuery | Store, args: argparse.Namespace) -> dict[str, Any]:
    text: str = args.baseline
    if ".." in text and not Path(text).exists():
        lo, _, hi = text.partition("..")
        try:
            start_ns, end_ns = time_arg(lo), time_arg(hi)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--baseline {text}: {exc}") from None
        if start_ns >= end_ns:
            raise UsageError(f"--baseline {text}: the start must be before the end")
        return build_report(source, args.service, start_ns, end_ns, None, args.limit)
    try:
        saved = json.loads(Path(text).read_text())
    except OSError as exc:
        raise UsageError(f"--baseline {text}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise UsageError(f"--baseline {text}: not a JSON report of netgap breakdown") from None
    if not isinstance(saved, dict) or "summary" not in saved:
        raise UsageError(f"--baseline {text}: not a JSON report of netgap breakdown --json")
    return saved
