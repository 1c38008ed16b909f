"""Receive traces over OTLP, keep them in SQLite, and answer Jaeger's query API v3 over them.

A stand-in for Jaeger: the tiers export to it as to any OTLP backend, and whatever reads
Jaeger's /api/v3 (netgap breakdown, curl) reads it here. One process, three listeners:

  otlp/http  POST /v1/traces: protobuf or JSON, gzip/deflate too --otlp-http (127.0.0.1:4318)
  otlp/grpc  the OTLP TraceService                               --otlp-grpc (127.0.0.1:4317)
  query      GET /api/v3/services, /api/v3/operations,
             /api/v3/traces?query.serviceName=...&query.startTimeMin=...&query.startTimeMax=...,
             /api/v3/traces/{trace_id}                           --query (127.0.0.1:16686)

Spans go to one SQLite file (--db) and survive restarts. A request that is not valid OTLP is
refused whole with a 4xx and a one-line reason. Retention counts from when the collector first
received a trace: those older than --max-age go, and while there are more than --max-spans
spans, the earliest received traces go. SIGTERM or Ctrl-C stops gracefully (exit 0).
"""

import argparse
import logging
import re
from pathlib import Path

from netgap.address import Address, parse_address
from netgap.collector.server import Collector, Settings, run_until_signalled
from netgap.timeparse import NS_PER_S, TimeFormatError, parse_go_duration_ns
from netgap.tracepage import page_routes

_SIZE = re.compile(r"(\d[\d_]*)\s*(|b|k|kib|m|mib|g|gib)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20}
_SIZE_UNITS |= {"g": 2**30, "gib": 2**30}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = Settings()
    parser.add_argument(
        "--otlp-http",
        type=_receiver_address,
        default=default.otlp_http,
        metavar="HOST:PORT",
        help="OTLP/HTTP listener, or off (127.0.0.1:4318)",
    )
    parser.add_argument(
        "--otlp-grpc",
        type=_receiver_address,
        default=default.otlp_grpc,
        metavar="HOST:PORT",
        help="OTLP/gRPC listener, or off (127.0.0.1:4317)",
    )
    parser.add_argument(
        "--query",
        type=_address,
        default=default.query,
        metavar="HOST:PORT",
        help="Jaeger API v3 listener (127.0.0.1:16686, Jaeger's port)",
    )
    parser.add_argument(
        "--db", type=Path, default=default.db, help=f"the SQLite file ({default.db})"
    )
    parser.add_argument(
        "--max-age",
        type=_age,
        default=default.max_age_s,
        metavar="DURATION",
        help="drop traces first received longer ago than this, in Go syntax; 0: never (24h)",
    )
    parser.add_argument(
        "--max-spans",
        type=_count,
        default=default.max_spans,
        metavar="N",
        help="keep at most this many spans, dropping the earliest received traces; 0: no limit"
        " (1_000_000)",
    )
    parser.add_argument(
        "--max-body",
        type=_size,
        default=default.max_body,
        metavar="BYTES",
        help="refuse OTLP requests larger than this, as sent or decompressed, e.g. 512KiB (8MiB)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="netgap collect: %(message)s")
    settings = Settings(
        db=args.db,
        otlp_http=args.otlp_http,
        otlp_grpc=args.otlp_grpc,
        query=args.query,
        max_age_s=args.max_age,
        max_spans=args.max_spans,
        max_body=args.max_body,
    )
    collector = Collector(settings, extra_query_routes=page_routes)
    run_until_signalled(collector, lambda: _print_ready(collector))
    print(
        f"netgap collect: stopped, {collector.store.span_count()} spans in {settings.db}",
        flush=True,
    )
    return 0


def _print_ready(collector: Collector) -> None:
    settings = collector.settings
    limits = [
        f"for {_seconds_text(settings.max_age_s)}" if settings.max_age_s else "",
        f"up to {settings.max_spans} spans" if settings.max_spans else "",
    ]
    keeping = ", ".join(part for part in limits if part) or "everything"
    print(
        f"netgap collect: {collector.store.span_count()} spans in {settings.db}"
        f" (keeping {keeping})\n"
        f"  otlp/http {_on(collector.otlp_http_url)}\n"
        f"  otlp/grpc {_on(collector.otlp_grpc_url)}\n"
        f"  query on {collector.query_url}/api/v3/\n"
        "Ctrl-C stops.",
        flush=True,
    )


def _on(url: str | None) -> str:
    return "off" if url is None else f"on {url}"


def _seconds_text(seconds: float) -> str:
    # In Go's units, which --max-age takes (there is no "d").
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _receiver_address(text: str) -> Address | None:
    return None if text.strip().lower() == "off" else _address(text)


def _age(text: str) -> float | None:
    try:
        ns = parse_go_duration_ns(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ns < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return ns / NS_PER_S or None


def _count(text: str) -> int | None:
    try:
        value = int(text)  # takes 1_000_000 too
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value or None


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size like 8MiB, 512KiB or 1048576: {text!r}")
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 byte or more, got {text}")
    return value
