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
from pathlib import Path
from typing import Any

from netgap.analysis import baseline_report, breakdown_report, open_trace_source
from netgap.argtypes import positive_int
from netgap.errors import UsageError
from netgap.metric_source import is_metric_source, metric_report, open_metric_source
from netgap.report import csv_text, metric_lines, plot, table
from netgap.timeparse import duration_arg, time_arg
from netgap.trace_source import DEFAULT_SOURCE


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
    with open_trace_source(trace_url or DEFAULT_SOURCE, args.store) as source:
        report = breakdown_report(source, args.service, start_ns, end_ns, bucket_ns, args.limit)
        if args.baseline:
            report.compare(baseline_report(source, args.baseline, args.service, args.limit))
    if metric is not None:
        report.add_metric(metric)
    _print(args, report.as_json())
    return 0


def _print(args: argparse.Namespace, report: dict[str, Any]) -> None:
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


def _window(args: argparse.Namespace) -> tuple[int, int]:
    if args.since and (args.start or args.end):
        raise UsageError("--since cannot be combined with --start/--end")
    end_ns = args.end or time.time_ns()
    start_ns = args.start or end_ns - (args.since or 15 * 60 * 1_000_000_000)
    if start_ns >= end_ns:
        raise UsageError("--start must be before --end")
    return start_ns, end_ns
