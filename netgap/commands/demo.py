"""Run both tiers on loopback, with their spans written to files.

Starts the API tier and the web tier (which calls it), waits until both are healthy, sends one
request and prints how its time splits (the web tier's Server-Timing header), then runs until
Ctrl-C, when it stops both gracefully. Spans go to `<logs>/<tier>.spans.jsonl` (the console
exporter, one span a line) unless --exporter otlp sends them to OTEL_EXPORTER_OTLP_ENDPOINT.
"""

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

import httpx

from netgap.argtypes import non_negative_float, port
from netgap.errors import NetgapError
from netgap.supervisor import Child, check_port_free

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address both tiers listen on")
    parser.add_argument("--web-port", type=port, default=8800, help="web tier port (8800)")
    parser.add_argument("--api-port", type=port, default=8801, help="API tier port (8801)")
    parser.add_argument(
        "--query-delay-ms",
        type=non_negative_float,
        default=2.0,
        help="the API's simulated query (2 ms)",
    )
    parser.add_argument(
        "--exporter",
        choices=("console", "otlp"),
        default="console",
        help="console: spans to files in --logs (default); otlp: to OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    parser.add_argument(
        "--logs", type=Path, default=Path(".demo"), help="folder for logs and spans (.demo)"
    )


def run(args: argparse.Namespace) -> int:
    check_port_free(args.host, args.api_port, "--api-port")
    check_port_free(args.host, args.web_port, "--web-port")
    args.logs.mkdir(parents=True, exist_ok=True)
    api_url = f"http://{args.host}:{args.api_port}/"
    web_url = f"http://{args.host}:{args.web_port}/"
    common = {"HOST": args.host, "OTEL_TRACES_EXPORTER": args.exporter}
    api = _child(
        "apitier",
        args,
        api_url,
        {**common, "PORT": str(args.api_port), "QUERY_DELAY_MS": str(args.query_delay_ms)},
    )
    web = _child(
        "webtier", args, web_url, {**common, "PORT": str(args.web_port), "API_URL": api_url}
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in (api, web):
            child.start()
            child.wait_healthy(START_TIMEOUT_S)
        _print_ready(args, web_url, api_url)
        _print_first_request(web_url)
        while not stop.wait(0.2):
            for child in (api, web):
                if child.exited():
                    raise NetgapError(
                        f"{child.name} exited with {child.returncode()}",
                        hint=f"see {child.stderr}",
                    )
    finally:
        codes = [child.stop(STOP_TIMEOUT_S) for child in (web, api)]
    print(f"netgap demo: stopped (web tier exit {codes[0]}, API tier exit {codes[1]})")
    return 0 if codes == [0, 0] else 1


def _child(name: str, args: argparse.Namespace, url: str, env: dict[str, str]) -> Child:
    logs: Path = args.logs
    return Child(
        name=name,
        module=name,
        env=env,
        health_url=f"{url}healthz",
        stdout=logs / f"{name}.spans.jsonl",
        stderr=logs / f"{name}.log",
    )


def _print_ready(args: argparse.Namespace, web_url: str, api_url: str) -> None:
    logs: Path = args.logs
    spans = (
        f"{logs}/webtier.spans.jsonl, {logs}/apitier.spans.jsonl (one span a line)"
        if args.exporter == "console"
        else "OTLP, to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318)"
    )
    print(
        "netgap demo: both tiers are up\n"
        f"  web tier   {web_url}   try: curl -i {web_url}\n"
        f"  API tier   {api_url}\n"
        f"  spans      {spans}\n"
        f"  logs       {logs}/webtier.log, {logs}/apitier.log (one JSON line per request)\n"
        "Ctrl-C stops both.",
        flush=True,
    )


def _print_first_request(web_url: str) -> None:
    try:
        response = httpx.get(web_url, timeout=10)
    except httpx.HTTPError as exc:
        print(f"first request: failed ({exc})", flush=True)
        return
    print(
        f"first request: {response.status_code}, "
        f"trace {response.headers.get('traceresponse', '-')}, "
        f"Server-Timing {response.headers.get('server-timing', '-')}",
        flush=True,
    )
