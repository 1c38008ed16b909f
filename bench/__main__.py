"""Every performance figure of the lab, measured side by side on this machine, in one run:

    python -m bench [--quick] [--out .bench/results.json]

1. five stacks web -> API side by side (issue 16): the stock anchor (bench/stock: every
   library's defaults), untraced (OTEL_SDK_DISABLED=true), standard (the default tracing
   mode), lean (TRACING_MODE=lean) and standard at 10% head sampling: throughput at 32
   connections and CPU seconds per 1000 requests of both tiers (/proc/PID/stat), their
   ratios against their targets, serial p50/p99; each lean piece's saving (the encoder
   alone, bench/leancost.py); metrics on/off and a control pair of identical stacks;
   TCP_INFO's cost alone (bench/tcpcost.py) and in place (one stack switching it on and off
   inside each tier, bench/toggle/);
2. the serial standard p50 above the simulated query (QUERY_DELAY_MS);
3. the remote-calls floor webtier->apitier on loopback, standard and lean (from the traces,
   via the collector);
4. the fault proxy with no faults vs direct: added p50, throughput ratio (HTTP, wrk), and the
   raw-socket figures of tests/netgap/fault/bench.py;
5. collector ingest (spans/s, one core) and breakdown speed (traces/s from the store, and
   over HTTP api_v3 from `netgap collect`, bench/breakdown_api.py);
6. each tier's RSS after 60 s at load.

HTTP load is wrk (closed loop, keep-alive). Comparisons alternate round by round and their
ratios are taken within each round; figures are medians of the rounds. The table marks each
figure with its target; the JSON (--out) has every round. --quick: a second or so per run, for
a smoke test (the figures are then rough).
"""

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.http import wrk_version
from bench.measure import measure
from bench.run import FULL, QUICK, Run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds each")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(".bench/results.json"),
        help="every figure and round, as JSON",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs and stores"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    command = _parser()
    args = command.parse_args(argv)
    if shutil.which("wrk") is None:
        command.exit(2, f"{command.prog}: wrk not found: apt-get install wrk (Debian's package)\n")
    plan = QUICK if args.quick else FULL
    logs = Path(tempfile.mkdtemp(prefix="netgap-bench-"))
    started = time.monotonic()
    date = report.now_iso()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    load_at_start = Path("/proc/loadavg").read_text().split()[:3]
    run = Run(plan, logs, say)
    try:
        measure(run)
    finally:
        if args.keep_logs:
            say(f"logs and stores kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    elapsed = time.monotonic() - started
    document = _document(run, date, round(elapsed, 1), load_at_start, quick=args.quick)
    report.write_json(args.out, document)
    _print_results(run, document, elapsed, args.out)
    return 0


def _document(
    run: Run, date: str, duration_s: float, loadavg: list[str], *, quick: bool
) -> dict[str, Any]:
    """The results JSON (--out): the machine, the tools, every figure and round."""
    return {
        "date": date,
        "machine": report.machine(),
        "tool": {
            "http": f"{wrk_version()}: one thread, keep-alive, closed loop, --latency",
            "placement": run.placement,
            "plan": asdict(run.plan),
            "quick": quick,
        },
        "duration_s": duration_s,
        "loadavg_at_start": loadavg,
        "figures": [f.to_dict() for f in sorted(run.figures, key=lambda f: f.item)],
        "rounds": run.rounds,
        "notes": run.notes,
    }


def _print_results(run: Run, document: dict[str, Any], elapsed: float, out: Path) -> None:
    """The table, the placement, every round in brief, the notes and the targets missed."""
    m, date = document["machine"], document["date"]
    quick = document["tool"]["quick"]
    sys.stderr.flush()
    print(f"\nnetgap bench, {date}, {m['cpus']} x {m['model']}, Linux {m['kernel']}, "
          f"Python {m['python']}{' (--quick)' if quick else ''}\n")  # fmt: skip
    figures = sorted(run.figures, key=lambda f: f.item)  # stable: each item's order kept
    print(report.table(figures))
    print(f"\nHTTP load: {document['tool']['http']}")
    print("placement: " + "; ".join(f"{k}: {v}" for k, v in run.placement.items()))
    print(report.details(run.rounds))
    for note in run.notes:
        print(f"note: {note}")
    missed = [f.name.strip() for f in run.figures if f.passed is False]
    print(f"\n{len(missed)} of {sum(f.passed is not None for f in run.figures)} targets missed"
          f"{': ' + '; '.join(missed) if missed else ''}")  # fmt: skip
    print(f"took {elapsed:.0f} s; every round in {out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
