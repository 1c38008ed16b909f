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
from pathlib import Path
from types import FrameType

import httpx

from netgap.analysis import build_report
from netgap.argtypes import non_negative_float, port
from netgap.errors import NetgapError
from netgap.loadgen import LoadConfig, run_load
from netgap.report import plot, table
from netgap.supervisor import Child, check_port_free, pin_apart
from netgap.trace_source import JaegerQuery

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
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
    logs: Path = args.logs
    logs.mkdir(parents=True, exist_ok=True)
    base = f"http://{args.host}"
    query_url = f"{base}:{args.query_port}"
    api_url = f"{base}:{args.api_port}/"
    web_url = f"{base}:{args.web_port}/"
    tier_env = {
        "HOST": args.host,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{base}:{args.otlp_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }
    collector = Child(
        "collector",
        [
            "netgap",
            "collect",
            "--otlp-http",
            f"{args.host}:{args.otlp_port}",
            "--otlp-grpc",
            "off",
            "--query",
            f"{args.host}:{args.query_port}",
            "--db",
            str(logs / "traces.db"),
        ],
        {},
        f"{query_url}/api/v3/services",
        logs / "collector.out",
        logs / "collector.log",
    )
    api = Child(
        "API tier",
        ["apitier"],
        {**tier_env, "PORT": str(args.api_port), "QUERY_DELAY_MS": str(args.query_delay_ms)},
        f"{api_url}healthz",
        logs / "apitier.out",
        logs / "apitier.log",
    )
    web = Child(
        "web tier",
        ["webtier"],
        {**tier_env, "PORT": str(args.web_port), "API_URL": api_url, "JAEGER_UI_URL": query_url},
        f"{web_url}healthz",
        logs / "webtier.out",
        logs / "webtier.log",
    )
    children = [collector, api, web]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in children:
            child.start()
            child.wait_healthy(START_TIMEOUT_S)
        if args.pin:
            pin_apart(api, [web])
        print(f"netgap demo: collector, API tier and web tier are up (logs in {logs}/)", flush=True)
        first_trace = _first_request(web_url)
        started_ns = time.time_ns()
        _traffic(args, web_url, stop)
        if not stop.is_set():
            stop.wait(FLUSH_WAIT_S)
            _report(args, query_url, started_ns - 1_000_000_000)
            print(
                f"\n  web page      {web_url}\n"
                f"  trace page    {query_url}/trace/{first_trace}\n"
                f"  recent traces {query_url}/\n"
                f"  query API     {query_url}/api/v3/services (Jaeger's api_v3)\n"
                f"  breakdown     netgap breakdown --since 5m\n",
                flush=True,
            )
        if not args.exit_after_report:
            print("Ctrl-C stops everything.", flush=True)
            while not stop.wait(0.2):
                for child in children:
                    if child.exited():
                        raise NetgapError(
                            f"{child.name} exited with {child.returncode()}",
                            hint=f"see {child.stderr}",
                        )
    finally:
        codes = [child.stop(STOP_TIMEOUT_S) for child in reversed(children)]
    print(f"netgap demo: stopped (exit codes {codes})")
    return 0 if all(code == 0 for code in codes) else 1


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
