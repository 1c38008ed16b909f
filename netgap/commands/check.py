"""Where are my traces? Send one request and follow its trace to the backend.

Sends one request to the web tier, reads the trace id from its `traceresponse` header, then
polls the trace source (Jaeger or `netgap collect`) until that trace's spans arrive from every
expected service. Exit 0 when they do; otherwise exit 1 with the cause in plain words: web tier
unreachable, tracing off or sampled out, backend unreachable, spans never arriving, spans from
one tier only, or unexpected service names.
"""

import argparse
import os
import time

import httpx

from netgap.breakdown import break_down
from netgap.errors import NetgapError
from netgap.model import Span
from netgap.timeparse import duration_arg
from netgap.trace_source import DEFAULT_SOURCE, JaegerQuery, TraceSourceError


class CheckFailed(NetgapError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web", default="http://127.0.0.1:8800/", help="the web tier's URL")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="trace source (query API) URL")
    parser.add_argument(
        "--services",
        default="webtier,apitier",
        help="services whose spans must arrive (webtier,apitier)",
    )
    parser.add_argument(
        "--timeout", type=duration_arg, default=15_000_000_000, help="how long to wait (15s)"
    )


def run(args: argparse.Namespace) -> int:
    expected = [s.strip() for s in args.services.split(",") if s.strip()]
    print(f"web tier       {args.web}")
    print(f"trace source   {args.source}")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        print(f"OTEL_EXPORTER_OTLP_ENDPOINT here: {endpoint} (the tiers' own may differ)")
    trace_id = _request_trace_id(args.web)
    print(f"trace          {trace_id}")
    with JaegerQuery(args.source, timeout_s=5) as source:
        spans = _await_trace(source, trace_id, expected, args.timeout / 1e9)
    services = sorted({s.service for s in spans})
    result = break_down(spans)
    split = ", ".join(
        f"{name} {ns / 1e6:.3f} ms" for name, ns in (result.components() if result else {}).items()
    )
    print(f"OK: {len(spans)} spans from {', '.join(services)} arrived; {split}")
    return 0


def _request_trace_id(url: str) -> str:
    try:
        response = httpx.get(url, timeout=10, trust_env=False)
    except httpx.HTTPError as exc:
        raise CheckFailed(
            f"the web tier is not reachable at {url} ({type(exc).__name__})",
            hint="start it (make demo), or pass --web",
        ) from exc
    header = response.headers.get("traceresponse")
    if not header:
        raise CheckFailed(
            f"{url} answered {response.status_code} without a traceresponse header: "
            "tracing is off in the web tier (OTEL_SDK_DISABLED=true?) or this is not the web tier"
        )
    parts = header.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        raise CheckFailed(f"cannot read the traceresponse header {header!r}")
    if not int(parts[3], 16) & 1:
        raise CheckFailed(
            f"trace {parts[1]} was sampled out (trace flags {parts[3]}): no span was recorded",
            hint="check OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG on the tiers",
        )
    return str(parts[1])


def _await_trace(
    source: JaegerQuery, trace_id: str, expected: list[str], timeout_s: float
) -> list[Span]:
    deadline = time.monotonic() + timeout_s
    spans: list[Span] = []
    while True:
        try:
            spans = source.trace(trace_id)
        except TraceSourceError as exc:
            raise CheckFailed(
                f"the trace source is unreachable or failing: {exc}",
                hint=exc.hint or "start `netgap collect` or Jaeger, or pass --source",
            ) from exc
        if set(expected) <= {s.service for s in spans}:
            return spans
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    raise CheckFailed(_missing(source, trace_id, spans, expected, timeout_s))


def _missing(
    source: JaegerQuery, trace_id: str, spans: list[Span], expected: list[str], timeout_s: float
) -> str:
    seen = sorted({s.service for s in spans})
    if not spans:
        known = source.services()
        return (
            f"trace {trace_id} did not arrive at {source.base_url} within {timeout_s:g} s; "
            f"the backend knows services: {', '.join(known) or 'none'}. The tiers export "
            "somewhere else (check their OTEL_EXPORTER_OTLP_ENDPOINT and the 'telemetry' line "
            "they log at start) or their export fails (see their logs)"
        )
    missing = [s for s in expected if s not in seen]
    unexpected = [s for s in seen if s not in expected]
    if unexpected:
        return (
            f"trace {trace_id} has spans from {', '.join(seen)} but not {', '.join(missing)}: "
            "the service names differ from what is expected (OTEL_SERVICE_NAME; or pass --services)"
        )
    return (
        f"only {', '.join(seen)} spans of trace {trace_id} arrived within {timeout_s:g} s: "
        f"{', '.join(missing)} does not export to {source.base_url} (its "
        "OTEL_EXPORTER_OTLP_ENDPOINT, its sampler, or a failing export: see its log)"
    )
