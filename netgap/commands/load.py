"""Send HTTP GETs at a steady rate (open loop) and report latency and errors.

Requests go out on schedule whatever the server does: --rate a second, evenly spaced, or with
--poisson random (exponential) gaps. Latency counts from each request's scheduled time, so a
stalling server cannot hide behind a client that slowed down with it (no coordinated omission).
When --max-inflight requests are outstanding, one that comes due is not sent and counts as the
error `dropped (max in-flight)`. Progress shows on stderr when it is a terminal.

--duration 0 runs until SIGTERM or Ctrl-C and prints one line per --interval. Any stop waits up
to --timeout for the requests in flight (Ctrl-C again: no waiting), then prints the summary.
Exit code 0 when it ran, 1 when not one request succeeded, 2 for a bad command line.
"""

import argparse
import asyncio
import gc
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from netgap import aio
from netgap.argtypes import (
    duration_s,
    header,
    http_url,
    positive_duration_s,
    positive_float,
    positive_int,
)
from netgap.errors import NetgapError, UsageError
from netgap.loadgen import CONNECT, IntervalStats, LoadConfig, LoadGenerator, LoadResult

PROGRESS_EVERY_S = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", type=http_url, help="what to GET (http or https)")
    parser.add_argument(
        "--rate", type=positive_float, required=True, metavar="N", help="requests per second"
    )
    parser.add_argument(
        "--duration",
        type=duration_s,
        default=10.0,
        metavar="TIME",
        help="how long to send: 20s, 2m, 1h, or seconds; 0: until stopped (10s)",
    )
    parser.add_argument(
        "--poisson",
        action="store_true",
        help="random gaps between requests (exponential, mean 1/rate) instead of even ones",
    )
    parser.add_argument(
        "--seed", type=int, help="the --poisson random sequence, for a repeatable run"
    )
    parser.add_argument(
        "--max-inflight",
        type=positive_int,
        default=256,
        metavar="N",
        help="outstanding requests at most; one due beyond that is dropped, not queued (256)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_duration_s,
        default=10.0,
        metavar="TIME",
        help="for each whole request (10s)",
    )
    parser.add_argument(
        "--interval",
        type=positive_duration_s,
        default=10.0,
        metavar="TIME",
        help="with --duration 0: one line of numbers per interval (10s)",
    )
    parser.add_argument(
        "--header",
        type=header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a request header to add; repeatable",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object instead of the table (with --duration 0, one per line)",
    )


def run(args: argparse.Namespace) -> int:
    if args.seed is not None and not args.poisson:
        raise UsageError("--seed only applies to --poisson arrivals", hint="add --poisson")
    config = LoadConfig(
        url=args.url,
        rate=args.rate,
        duration_s=args.duration,
        poisson=args.poisson,
        seed=args.seed,
        max_inflight=args.max_inflight,
        timeout_s=args.timeout,
        interval_s=args.interval,
        headers=tuple(args.header),
    )
    progress = ProgressLine(sys.stderr, config.duration_s) if sys.stderr.isatty() else None
    on_interval = None
    if config.duration_s == 0:
        on_interval = _interval_printer(as_json=args.json, progress=progress)
    result = aio.run(_load(config, on_interval, progress))
    if args.json:
        print(json.dumps({"record": "summary", **result.to_dict()}), flush=True)
    else:
        print(format_table(result), flush=True)
    if result.all_failed:
        kinds = sorted(result.errors.items(), key=lambda item: (-item[1], item[0]))
        raise NetgapError(
            f"every request to {config.url} failed "
            f"({', '.join(f'{count} {kind}' for kind, count in kinds)})",
            hint="is the server up and listening there?" if CONNECT in result.errors else None,
        )
    return 0


async def _load(
    config: LoadConfig,
    on_interval: Callable[[IntervalStats], None] | None,
    progress: "ProgressLine | None",
) -> LoadResult:
    generator = LoadGenerator(config, on_interval)
    # What is alive now lives for the whole run: leaving it out of the collector's full passes
    # avoids pauses of ~20 ms that would delay the requests due meanwhile.
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for signum in stop_signals:
        loop.add_signal_handler(signum, generator.stop)
    drawing = asyncio.create_task(progress.follow(generator)) if progress else None
    try:
        return await generator.run()
    finally:
        for signum in stop_signals:
            loop.remove_signal_handler(signum)
        if drawing is not None and progress is not None:
            drawing.cancel()
            await asyncio.gather(drawing, return_exceptions=True)
            progress.clear()
        gc.unfreeze()


def _interval_printer(
    *, as_json: bool, progress: "ProgressLine | None"
) -> Callable[[IntervalStats], None]:
    def print_interval(stats: IntervalStats) -> None:
        if progress is not None:
            progress.clear()  # the terminal may show stdout and stderr on the same line
        if as_json:
            print(json.dumps({"record": "interval", **stats.to_dict()}), flush=True)
        else:
            print(format_interval(stats), flush=True)

    return print_interval


def format_table(result: LoadResult) -> str:
    config = result.config
    rows = [
        ("url", config.url),
        ("asked", f"{config.rate:g} req/s, {config.arrivals}"),
        ("elapsed", f"{result.elapsed_s:.2f} s"),
        ("sent", str(result.sent)),
        ("rate", f"{result.rate:.2f} req/s"),
        ("ok", str(result.ok)),
        ("errors", str(result.error_count)),
    ]
    by_count = sorted(result.errors.items(), key=lambda item: (-item[1], item[0]))
    rows += [(f"  {kind}", str(count)) for kind, count in by_count]
    rows += [(f"latency {name}", _ms(value)) for name, value in result.latency_ms.items()]
    rows.append(("send lag max", _ms(result.send_lag_max_ms)))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def format_interval(stats: IntervalStats) -> str:
    stamp = datetime.fromtimestamp(stats.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{stamp}  sent {stats.sent}  ok {stats.ok}  errors {stats.errors}  "
        f"rate {stats.rate:.1f}/s  p50 {_ms(stats.p50_ms)}  p99 {_ms(stats.p99_ms)}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


class ProgressLine:
    """One status line on a terminal, redrawn in place with a carriage return."""

    def __init__(self, stream: TextIO, duration_s: float) -> None:
        self._stream = stream
        self._of = f"/{duration_s:g}s" if duration_s else ""
        self._width = 0

    async def follow(self, generator: LoadGenerator) -> None:
        while True:
            self.draw(generator)
            await asyncio.sleep(PROGRESS_EVERY_S)

    def draw(self, generator: LoadGenerator) -> None:
        p = generator.progress()
        line = (
            f"{p.elapsed_s:.1f}s{self._of}  sent {p.sent}  ok {p.ok}  errors {p.errors}  "
            f"in flight {p.inflight}"
        )
        if p.stopping and p.inflight:
            line += "  (stopping: waiting for those)"
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = max(self._width, len(line))

    def clear(self) -> None:
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
