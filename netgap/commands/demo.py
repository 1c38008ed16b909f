"""Run the whole lab on loopback: collector, both tiers, some traffic, and the breakdown.

Starts `netgap collect` (OTLP in, Jaeger's query API and trace pages out), the API tier and the
web tier exporting to it (their pages link to the collector's trace pages), sends a steady load
for a short while (--load-rate, --load-for), then prints the breakdown of those requests (web /
remote calls / API), writes its plot, and prints where to look. Everything keeps running until
Ctrl-C, which stops it all gracefully. Logs, spans and the plot go to --logs (.demo).
"""

import argparse
import asyncio
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from netgap.analysis import build_report
from netgap.argtypes import non_negative_float, port
from netgap.errors import NetgapError
from netgap.lab import LineUp, Logs, collector, export_env, tier, url
from netgap.loadgen import LoadConfig, run_load
from netgap.report import plot, table
from netgap.supervisor import check_port_free
from netgap.trace_source import JaegerQuery

FLUSH_WAIT_S = 1.5  # the tiers' span batches go out every 0.5 s in the demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address everything listens on")
    parser.add_argument("--web-port", type=port, default=8800, help="web tier port (8800)")
    parser.add_argument("--api-port", type=port, default=8801, help="API tier port (8801)")
    parser.add_argument("--otlp-port", type=port, default=4318, help="collector OTLP/HTTP (4318)")
    parser.add_argument(
        "--query-port", type=port, default=16686, help="collector query API and pages (16686)"
    )
    parser.add_argument(
        "--query-delay-ms", type=non_negative_float, default=2.0, help="the API's query (2 ms)"
    )
    parser.add_argument(
        "--load-rate", type=non_negative_float, default=20.0, help="requests/s of traffic (20)"
    )
    parser.add_argument(
        "--load-for", type=non_negative_float, default=10.0, help="seconds of traffic (10; 0: none)"
    )
    parser.add_argument(
        "--logs", type=Path, default=Path(".demo"), help="folder for logs, spans db, plot (.demo)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the API tier on one core and the web tier on another, as on separate nodes "
        "(on, with 2+ cores)",
    )
    parser.add_argument(
        "--exit-after-report",
        action="store_true",
        help="stop everything after printing the report instead of waiting for Ctrl-C",
    )


def run(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--otlp-port", args.otlp_port),
        ("--query-port", args.query_port),
        ("--api-port", args.api_port),
        ("--web-port", args.web_port),
    ):
        check_port_free(args.host, value, flag)
    args.logs.mkdir(parents=True, exist_ok=True)
    urls = Urls.of(args)
    lineup = _lineup(args, urls)
    stop = _stop_on_signals()
    try:
        lineup.start(*lineup.children)
        if args.pin:
            lineup.pin()
        print(f"netgap demo: {lineup.names()} are up (logs in {args.logs}/)", flush=True)
        _story(args, urls, stop)
        if not args.exit_after_report:
            print("Ctrl-C stops everything.", flush=True)
            _wait_for_ctrl_c(lineup, stop)
    finally:
        codes = list(lineup.stop().values())
    print(f"netgap demo: stopped (exit codes {codes})")
    return 0 if all(code == 0 for code in codes) else 1


@dataclass(frozen=True)
class Urls:
    query: str  # the collector's query API and trace pages
    api: str
    web: str

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Urls":
        return cls(
            query=url(args.host, args.query_port, ""),
            api=url(args.host, args.api_port),
            web=url(args.host, args.web_port),
        )


def _lineup(args: argparse.Namespace, urls: Urls) -> LineUp:
    host, logs = args.host, Logs(args.logs)
    tier_env = export_env(url(host, args.otlp_port, ""))
    return LineUp(
        collector=collector(
            f"{host}:{args.otlp_port}",
            f"{host}:{args.query_port}",
            args.logs / "traces.db",
            logs.files("collector"),
        ),
        api=tier(
            "API tier",
            ["apitier"],
            host,
            args.api_port,
            {**tier_env, "QUERY_DELAY_MS": str(args.query_delay_ms)},
            logs.files("apitier"),
        ),
        web=tier(
            "web tier",
            ["webtier"],
            host,
            args.web_port,
            {**tier_env, "API_URL": urls.api, "JAEGER_UI_URL": urls.query},
            logs.files("webtier"),
        ),
    )


def _stop_on_signals() -> threading.Event:
    """Set by Ctrl-C or SIGTERM: the demo then stops everything in order."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _story(args: argparse.Namespace, urls: Urls, stop: threading.Event) -> None:
    """A first request, the traffic, and (unless stopped meanwhile) the breakdown and where
    to look."""
    first_trace = _first_request(urls.web)
    started_ns = time.time_ns()
    _traffic(args, urls.web, stop)
    if stop.is_set():
        return
    stop.wait(FLUSH_WAIT_S)
    _report(args, urls.query, started_ns - 1_000_000_000)
    print(
        f"\n  web page      {urls.web}\n"
        f"  trace page    {urls.query}/trace/{first_trace}\n"
        f"  recent traces {urls.query}/\n"
        f"  query API     {urls.query}/api/v3/services (Jaeger's api_v3)\n"
        f"  breakdown     netgap breakdown --since 5m\n",
        flush=True,
    )


def _wait_for_ctrl_c(lineup: LineUp, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        child = lineup.exited()
        if child is not None:
            raise NetgapError(
                f"{child.name} exited with {child.returncode()}", hint=f"see {child.log}"
            )


def _first_request(web_url: str) -> str:
    response = httpx.get(web_url, timeout=10, trust_env=False)
    header = response.headers.get("traceresponse", "---")
    print(
        f"first request: {response.status_code}, Server-Timing "
        f"{response.headers.get('server-timing', '-')}",
        flush=True,
    )
    return str(header.split("-")[1])


def _traffic(args: argparse.Namespace, web_url: str, stop: threading.Event) -> None:
    if not args.load_rate or not args.load_for:
        return
    print(f"sending {args.load_rate:g} requests/s for {args.load_for:g} s ...", flush=True)
    config = LoadConfig(url=web_url, rate=args.load_rate, duration_s=args.load_for)
    result = asyncio.run(run_load(config))
    print(
        f"load: {result.sent} sent, {result.ok} ok, errors {dict(result.errors) or 'none'}, "
        f"p50 {result.latency_ms.get('p50')} ms, p99 {result.latency_ms.get('p99')} ms",
        flush=True,
    )


def _report(args: argparse.Namespace, query_url: str, start_ns: int) -> None:
    logs: Path = args.logs
    end_ns = time.time_ns()
    bucket_ns = max((end_ns - start_ns) // 20, 500_000_000)
    with JaegerQuery(query_url) as source:
        report = build_report(source, "webtier", start_ns, end_ns, bucket_ns)
    plot(report, logs / "breakdown.png")
    without_series = {**report, "summary": {**report["summary"], "buckets": []}}
    print()
    print(table(without_series))
    print(f"\nplot written to {logs / 'breakdown.png'}")
