"""A soak: the traced web tier at a steady rate for a long time, watched for leaks.

    python -m bench.soak --duration 10m --rate 100 [--out .bench/soak.json]

Started here on 127.0.0.1: `netgap collect` (a real collector, SQLite store), the API tier and
the web tier calling it, both exporting their spans to the collector (pinned as `make bench`
pins them: web tier on the first core, API tier on the last). Load is netgap's open-loop
generator (`netgap load`'s library): --rate requests a second to the web tier, through a
--warmup and then --duration. Every --every both tiers' resident memory (VmRSS) and open file
descriptors (entries of /proc/PID/fd) are sampled. At the end: a short table and curves, every
sample in the JSON (--out), and the properties, each passed or failed:

  zero errors         every request of the run, warm-up included, answered 2xx/3xx (none
                      dropped, timed out or refused);
  RSS growth          under --max-growth % for each tier, from the end of the warm-up (when the
                      pools, caches and allocator arenas have filled) to the end;
  fds flat            each tier's count over the soak's last quarter (median) at most
                      --fd-slack above its first quarter's: a burst of concurrent requests
                      opens connections for a few seconds, a leak never gives them back;
  every request traced  the collector stored the 5 spans of each answered request.

Exit code 0 when all hold, 1 when one fails (or a process dies), 2 for a bad command line.
"""

import argparse
import asyncio
import gc
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import report, stack
from netgap import aio
from netgap.argtypes import (
    OneLineParser,
    duration_s,
    non_negative_int,
    positive_duration_s,
    positive_float,
)
from netgap.collector.store import Store
from netgap.errors import NetgapError
from netgap.lab import running
from netgap.loadgen import DROPPED, LoadConfig, LoadGenerator, LoadResult
from netgap.supervisor import Child

SPANS_PER_REQUEST = 5  # webtier SERVER + CLIENT, apitier SERVER + api-handler + fast-query
TABLE_ROWS = 12  # the printed table thins the samples to about this many rows
CURVE_WIDTH = 60
BARS = "▁▂▃▄▅▆▇█"
PROGRESS_EVERY_S = 30.0
# Open-loop: a request not answered within this is an error (the tiers answer in ~10 ms).
REQUEST_TIMEOUT_S = 5.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Limits:
    max_growth_pct: float
    fd_slack: int


@dataclass(frozen=True)
class Sample:
    """Both tiers at one moment, and the load's running totals then."""

    t_s: float  # since the load started
    phase: str  # "warm-up" or "soak" (the end of warm-up is the soak's first sample)
    sent: int
    ok: int
    errors: int
    rss_mb: dict[str, float]  # "web", "api"
    fds: dict[str, int]


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    limit: str
    passed: bool


class SoakError(Exception):
    """The run could not finish (a process died); the message says which and where to look."""


# -- the command line ------------------------------------------------------------------------


def parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=positive_duration_s,
        default=600.0,
        metavar="TIME",
        help="how long the soak runs after the warm-up: 60s, 10m, 1h (10m)",
    )
    p.add_argument(
        "--rate",
        type=positive_float,
        default=100.0,
        metavar="N",
        help="requests per second to the web tier (100)",
    )
    p.add_argument(
        "--warmup",
        type=duration_s,
        default=30.0,
        metavar="TIME",
        help="load before the soak, not judged for growth; 0: none (30s)",
    )
    p.add_argument(
        "--every",
        type=positive_duration_s,
        default=5.0,
        metavar="TIME",
        help="sample RSS and fds this often (5s)",
    )
    p.add_argument(
        "--max-growth",
        type=positive_float,
        default=10.0,
        metavar="PCT",
        help="RSS growth allowed over the soak, percent of each tier's (10)",
    )
    p.add_argument(
        "--fd-slack",
        type=non_negative_int,
        default=10,
        metavar="N",
        help="open fds a tier may gain over the soak: a keep-alive pool varies (10)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(".bench/soak.json"),
        help="the JSON with every sample (.bench/soak.json)",
    )
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the processes' logs and the collector's store",
    )
    return p


def parsed_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if args.every > args.duration / 2:
        p.error(
            f"argument --every: {args.every:g} s leaves fewer than 3 samples in --duration "
            f"{args.duration:g} s"
        )
    return args


# -- sampling -------------------------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample_times(warmup_s: float, duration_s: float, every_s: float) -> list[float]:
    """Seconds since the load started: every `every_s` through the warm-up, its end, then every
    `every_s` through the soak and its end."""
    warm = [k * every_s for k in range(math.ceil(warmup_s / every_s))]
    soak = [warmup_s + k * every_s for k in range(math.ceil(duration_s / every_s))]
    return [*warm, *soak, warmup_s + duration_s]


def alive(procs: dict[str, Child]) -> None:
    for proc in procs.values():
        code = None if proc.proc is None else proc.proc.poll()
        if code is not None:
            raise SoakError(f"{proc.name} exited with {code}; see {proc.log}")


def sample_now(t_s: float, phase: str, generator: LoadGenerator, tiers: dict[str, Child]) -> Sample:
    alive(tiers)
    progress = generator.progress()
    return Sample(
        t_s=round(t_s, 3),
        phase=phase,
        sent=progress.sent,
        ok=progress.ok,
        errors=progress.errors,
        rss_mb={name: round(proc.rss_mb(), 2) for name, proc in tiers.items()},
        fds={name: fd_count(proc.pid) for name, proc in tiers.items()},
    )


async def load_and_samples(
    config: LoadConfig, args: argparse.Namespace, tiers: dict[str, Child], say: Say
) -> tuple[LoadResult, list[Sample]]:
    """The load to its end, with a sample at each of sample_times() taken from the same loop
    (a few /proc reads: well under a millisecond, nothing the schedule notices)."""
    generator = LoadGenerator(config)
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    running = asyncio.create_task(generator.run())
    try:
        next_progress = PROGRESS_EVERY_S
        for t in sample_times(args.warmup, args.duration, args.every):
            await asyncio.sleep(max(0.0, start + t - loop.time()))
            # the phase by the time it was due: a timer may fire a millisecond early
            phase = "warm-up" if t < args.warmup else "soak"
            samples.append(sample_now(loop.time() - start, phase, generator, tiers))
            if t >= next_progress:
                say(progress_line(samples[-1]))
                next_progress += PROGRESS_EVERY_S
        return await running, samples
    finally:
        if not running.done():  # a tier died: stop sending, abandon what is in flight
            generator.stop()
            generator.stop()
            with suppress(Exception):
                await running


def progress_line(s: Sample) -> str:
    return (
        f"{s.phase} t={s.t_s:.0f} s  sent {s.sent}  errors {s.errors}  "
        f"web {s.rss_mb['web']:.1f} MB {s.fds['web']} fds  "
        f"API {s.rss_mb['api']:.1f} MB {s.fds['api']} fds"
    )


# -- the properties -------------------------------------------------------------------------


def soak_samples(samples: Sequence[Sample]) -> list[Sample]:
    """From the end of the warm-up (the soak's baseline) to the end."""
    return [s for s in samples if s.phase == "soak"]


def fd_medians(soak: Sequence[Sample], tier: str) -> tuple[float, float]:
    """The median fd count over the first and over the last quarter of the soak (3 samples at
    least): a sample taken during a burst of connections moves neither."""
    quarter = max(3, len(soak) // 4)
    counts = [s.fds[tier] for s in soak]
    return statistics.median(counts[:quarter]), statistics.median(counts[-quarter:])


def growth_pct(first: float, last: float) -> float:
    return (last - first) / first * 100


def checks(
    result: LoadResult, samples: Sequence[Sample], spans_stored: int | None, limits: Limits
) -> list[Check]:
    soak = soak_samples(samples)
    first, last = soak[0], soak[-1]
    due = result.sent + result.errors.get(DROPPED, 0)
    found = [
        Check(
            "zero errors",
            f"{result.error_count} errors, {result.ok} of {due} answered"
            + (f" ({_kinds(result.errors)})" if result.errors else ""),
            "0 errors, all answered",
            result.error_count == 0 and result.ok == due,
        )
    ]
    for tier, label in (("web", "web tier"), ("api", "API tier")):
        growth = growth_pct(first.rss_mb[tier], last.rss_mb[tier])
        found.append(
            Check(
                f"{label} RSS growth",
                f"{growth:+.1f} % ({first.rss_mb[tier]:.1f} -> {last.rss_mb[tier]:.1f} MB)",
                f"< {limits.max_growth_pct:g} %",
                growth < limits.max_growth_pct,
            )
        )
    for tier, label in (("web", "web tier"), ("api", "API tier")):
        before, after = fd_medians(soak, tier)
        gained = after - before
        highest = max(s.fds[tier] for s in soak)
        found.append(
            Check(
                f"{label} open fds flat",
                f"{gained:+g} (median {before:g} -> {after:g}; "
                f"{first.fds[tier]} -> {last.fds[tier]}, max {highest})",
                f"<= +{limits.fd_slack}",
                gained <= limits.fd_slack,
            )
        )
    expected = SPANS_PER_REQUEST * result.ok
    found.append(
        Check(
            "every request traced",
            "store unreadable" if spans_stored is None else f"{spans_stored} spans stored",
            f"{expected} ({SPANS_PER_REQUEST} x {result.ok} answered)",
            spans_stored == expected,
        )
    )
    return found


def _kinds(errors: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(errors.items(), key=lambda i: -i[1]))


def spans_in(db: Path) -> int | None:
    """Spans in the collector's store, read after it stopped (None: it cannot be opened)."""
    try:
        with Store(db) as store:
            return store.span_count()
    except Exception:  # a report to finish: the check says the store could not be read
        return None


# -- presentation ---------------------------------------------------------------------------


def thinned(samples: Sequence[Sample], rows: int = TABLE_ROWS) -> list[Sample]:
    """About `rows` samples, evenly spread, always with the soak's first and the last."""
    if len(samples) <= rows:
        return list(samples)
    soak = soak_samples(samples)
    keep = {id(samples[0]), id(samples[-1]), id(soak[0])} if soak else set()
    step = (len(samples) - 1) / (rows - 1)
    keep |= {id(samples[round(i * step)]) for i in range(rows)}
    return [s for s in samples if id(s) in keep]


def table(samples: Sequence[Sample]) -> str:
    header = ("t", "phase", "sent", "errors", "web RSS", "API RSS", "web fds", "API fds")
    rows = [header] + [
        (
            f"{s.t_s:.0f} s",
            s.phase,
            str(s.sent),
            str(s.errors),
            f"{s.rss_mb['web']:.1f} MB",
            f"{s.rss_mb['api']:.1f} MB",
            str(s.fds["web"]),
            str(s.fds["api"]),
        )
        for s in thinned(samples)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 1 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def curve(values: Sequence[float], width: int = CURVE_WIDTH, least_span: float = 0.0) -> str:
    """A sparkline from the values' min up to their max, or to min + `least_span` if that is
    higher: with the property's limit there, a full-height bar is a failure, and noise well
    inside the limit stays low instead of filling the height (flat: all lowest bars)."""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    low = min(values)
    span = max(max(values) - low, least_span)
    return "".join(
        BARS[0] if span == 0 else BARS[round((v - low) / span * (len(BARS) - 1))] for v in values
    )


def series(samples: Sequence[Sample], metric: str, tier: str) -> list[float]:
    """One tier's "rss" (MB) or "fds" over `samples`."""
    return [float(s.rss_mb[tier] if metric == "rss" else s.fds[tier]) for s in samples]


def curves(samples: Sequence[Sample], limits: Limits) -> str:
    soak = soak_samples(samples)
    lines = []
    for label, metric, tier in (
        ("web RSS", "rss", "web"),
        ("API RSS", "rss", "api"),
        ("web fds", "fds", "web"),
        ("API fds", "fds", "api"),
    ):
        values = series(soak, metric, tier)
        if metric == "rss":
            shown, limit = "{:.1f} MB".format, values[0] * limits.max_growth_pct / 100
        else:
            shown, limit = "{:.0f}".format, float(limits.fd_slack)
        lines.append(
            f"{label}  {shown(values[0]):>8} {curve(values, least_span=limit)} "
            f"{shown(values[-1])}  (min {shown(min(values))}, max {shown(max(values))})"
        )
    return "\n".join(lines)


def verdict(found: Sequence[Check]) -> str:
    rows = [("property", "measured", "limit", "")] + [
        (c.name, c.measured, c.limit, "pass" if c.passed else "FAIL") for c in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    failed = [c.name for c in found if not c.passed]
    lines.append("soak: " + (f"FAIL ({', '.join(failed)})" if failed else "pass"))
    return "\n".join(line.rstrip() for line in lines)


def document(
    args: argparse.Namespace,
    placement: dict[str, str],
    result: LoadResult,
    samples: Sequence[Sample],
    spans_stored: int | None,
    found: Sequence[Check],
    date: str,
) -> dict[str, Any]:
    soak = soak_samples(samples)
    return {
        "date": date,
        "machine": report.machine(),
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "every_s": args.every,
            "max_growth_pct": args.max_growth,
            "fd_slack": args.fd_slack,
            "placement": placement,
        },
        "load": result.to_dict(),
        "spans": {"stored": spans_stored, "expected": SPANS_PER_REQUEST * result.ok},
        "rss_growth_pct": {
            tier: round(growth_pct(soak[0].rss_mb[tier], soak[-1].rss_mb[tier]), 3)
            for tier in ("web", "api")
        },
        "fds_gained": {
            tier: fd_medians(soak, tier)[1] - fd_medians(soak, tier)[0] for tier in ("web", "api")
        },
        "samples": [asdict(s) for s in samples],
        "checks": [asdict(c) for c in found],
        "pass": all(c.passed for c in found),
    }


# -- the run --------------------------------------------------------------------------------


def placement_of(cores: list[int]) -> tuple[set[int] | None, set[int] | None, dict[str, str]]:
    """Web tier on the first core, API tier on the last (as `make bench`); one core: anywhere."""
    if len(cores) < 2:
        return None, None, {"web tier": "any", "API tier": "any", "load, collector": "any"}
    web, api = {cores[0]}, {cores[-1]}
    return (
        web,
        api,
        {"web tier": f"CPU {cores[0]}", "API tier": f"CPU {cores[-1]}", "load, collector": "any"},
    )


def soak(args: argparse.Namespace, logs: Path, say: Say) -> int:
    date = report.now_iso()
    web_cpus, api_cpus, placement = placement_of(stack.cores())
    db = logs / "traces.db"
    collector, otlp = stack.collector("collector", logs, db)
    lab = stack.tiers(
        "soak",
        logs,
        query_delay_ms=2,
        otel={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp},
        web_cpus=web_cpus,
        api_cpus=api_cpus,
    )
    tiers = {"web": lab.web, "api": lab.api}
    config = LoadConfig(
        url=lab.url,
        rate=args.rate,
        duration_s=args.warmup + args.duration,
        max_inflight=256,
        timeout_s=REQUEST_TIMEOUT_S,
    )
    say(f"starting the collector and both tiers (logs in {logs}) ...")
    with running(collector, lab.api, lab.web):
        say(
            f"{args.rate:g} req/s to {lab.url}: {args.warmup:g} s warm-up, {args.duration:g} s "
            "soak ..."
        )
        # What is alive now lives for the whole run (as `netgap load` does): the collector's
        # full passes then skip it, and pause the schedule less.
        gc.freeze()
        try:
            result, samples = aio.run(load_and_samples(config, args, tiers, say))
        finally:
            gc.unfreeze()
        say("stopping (the tiers flush their spans) ...")
    spans_stored = spans_in(db)
    limits = Limits(args.max_growth, args.fd_slack)
    found = checks(result, samples, spans_stored, limits)
    report.write_json(
        args.out, document(args, placement, result, samples, spans_stored, found, date)
    )
    print(summary(result, samples, found, limits, args.out), flush=True)
    return 0 if all(c.passed for c in found) else 1


def summary(
    result: LoadResult,
    samples: Sequence[Sample],
    found: Sequence[Check],
    limits: Limits,
    out: Path,
) -> str:
    latency = result.latency_ms
    return "\n".join(
        [
            f"\nnetgap soak: {result.sent} requests in {result.elapsed_s:.0f} s "
            f"({result.rate:.1f} req/s), {result.ok} ok, {result.error_count} errors; latency p50 "
            f"{latency['p50']} ms, p99 {latency['p99']} ms, max {latency['max']} ms",
            "",
            table(samples),
            "",
            f"from the end of warm-up to the end ({len(soak_samples(samples))} samples; a"
            " curve's full height is its limit, or more):",
            curves(samples, limits),
            "",
            verdict(found),
            f"samples: {out}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parsed_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="netgap-soak-"))
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    try:
        return soak(args, logs, say)
    except (SoakError, RuntimeError, NetgapError) as exc:  # a process died or never started
        hint = f"; {exc.hint}" if isinstance(exc, NetgapError) and exc.hint else ""
        print(f"python -m bench.soak: {exc}{hint}", file=sys.stderr)
        args.keep_logs = True  # the message points into them
        return 1
    finally:
        if args.keep_logs:
            say(f"logs and the store kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
