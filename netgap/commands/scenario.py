"""Replay the incident on one machine: baseline, fault, recovery, and a report that explains it.

Starts the collector, the API tier, `netgap fault proxy` in front of it and the web tier
calling the API through the proxy, then sends a steady load (--rate) through three phases:
--baseline without faults, --fault with them (--preset article: 500 ms latency, a 50 kbit/s
cap and 1% loss, as in the story; --latency, --jitter, --bandwidth and --loss change single
fields), and --recovery after they are cleared. It then reads the traces back and writes
--out/scenario.html (a stacked time plot with the fault shaded, the kernel's srtt and
resends at each end of the web tier's connections to the API, a per-phase table, the
diagnosis in words) and --out/scenario.json, and prints the table. Ctrl-C or SIGTERM stop it:
the faults are cleared and every process stops.

The report puts an expected remote time next to the measured one: round trips, the cap's
transfer time for the bytes of one exchange (measured at start), retransmission stalls for the
loss, and queueing when the load offers more bytes a second than the cap carries; it names
the term that dominates.

Why --rate 30 by default: one exchange is about 210 B up and 245 B down, and the proxy caps
each direction at 50 kbit/s = 6250 B/s, so the responses fill the cap at about 25 requests/s.
At 5 requests/s a request pays the round trip and the transfer, about 1.1 s, and no more. At
30 the responses offer ~7300 B/s, the backlog grows ~0.17 s every second, and by the end of
a 60 s fault requests wait ~10 s: the story's 6-20 s. Much above 40, the backlog passes the web
tier's --api-timeout before the fault ends and requests fail with 504 instead.

Keep-alive: the API tier runs with KEEPALIVE_TIMEOUT_S = 2 x --api-timeout + 5 s (65 s by
default), not uvicorn's 5 s. Under the fault an answer waits seconds in the queue after the API
wrote it, and the next request as long on its way: a server that times the idle connection out
meanwhile closes it under an answer or a request still in transit, which the web tier sees as a
connection closed or reset (it sends the call again, once, on a new connection). The web tier
lets its idle connections go after 2 s (API_KEEPALIVE_EXPIRY_S), well below.

Kernel mode (--kernel, root only): the API tier runs in a network namespace of its own
(ngs-api-*), routed to the root namespace through a hop namespace (ngs-hop-*) by two veth
pairs (198.51.100.1 web side, .6 API side), and the faults are the kernel's, on both of the
hop's egresses, as on a router: the cap a tbf (under an htb root with u32 filters), the loss
an iptables `statistic` rule, the latency netem's when the kernel has it.
Without netem the latency (and jitter) stays with a `netgap fault proxy` in front of the API,
and the run says so. Only traffic to and from the API's port is faulted, not the API tier's
span export to the collector across the same hop; in the story the agent's own export crossed
the broken overlay too: a deliberate simplification. The namespaces, the veth pairs, every qdisc
and iptables rule are removed at the end, on Ctrl-C and SIGTERM too.

  netgap scenario --preset article
  netgap scenario --baseline 10s --fault 20s --recovery 10s --rate 30 --out /tmp/scenario
  netgap scenario --latency 100ms --bandwidth none --loss 0
  sudo netgap scenario --kernel --baseline 6s --fault 10s --recovery 6s
"""

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from netgap.argtypes import (
    duration_s,
    non_negative_float,
    port,
    positive_duration_s,
    positive_float,
)
from netgap.commands import fault_flags
from netgap.commands.fault_flags import SHAPING, add_fault_arguments
from netgap.errors import UsageError
from netgap.fault.spec import Faults
from netgap.scenario import answers, diagnosis, kernel, plots, report, text
from netgap.scenario.config import Phase, Ports, ScenarioConfig
from netgap.scenario.phases import Interrupted
from netgap.scenario.run import run_scenario

DEFAULT_RATE = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    phases = parser.add_argument_group("phases")
    phases.add_argument(
        "--baseline",
        type=positive_duration_s,
        default=30.0,
        metavar="TIME",
        help="how long before the faults (30s)",
    )
    phases.add_argument(
        "--fault",
        type=positive_duration_s,
        default=60.0,
        metavar="TIME",
        help="how long the faults last (60s)",
    )
    phases.add_argument(
        "--recovery",
        type=positive_duration_s,
        default=30.0,
        metavar="TIME",
        help="how long after they are cleared (30s)",
    )
    phases.add_argument(
        "--settle",
        type=duration_s,
        default=1.0,
        metavar="TIME",
        help="left out of the statistics at either edge of each phase (1s)",
    )
    faults = add_fault_arguments(
        parser,
        fields=SHAPING,
        title="faults (the preset's, with these fields changed)",
        default_preset="article",
        taken=("--rate",),  # requests a second here; the cap is --bandwidth
    )
    faults.add_argument(
        "--seed", type=int, metavar="N", help="the proxy's random draws repeat run after run"
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=DEFAULT_RATE,
        metavar="N",
        help=f"requests/s on the web tier, every phase ({DEFAULT_RATE:g}; see above)",
    )
    parser.add_argument(
        "--api-timeout",
        type=positive_duration_s,
        default=30.0,
        metavar="TIME",
        help="how long the web tier waits for the API (30s); slow calls must finish to be "
        "seen; the API tier keeps idle connections twice this + 5 s (see above)",
    )
    parser.add_argument(
        "--query-delay-ms", type=non_negative_float, default=2.0, help="the API's query (2 ms)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the API tier on one core, the web tier and the proxy on another, as on "
        "separate nodes (on, with 2+ cores)",
    )
    parser.add_argument(
        "--kernel",
        action="store_true",
        help="faults by tc and iptables on a routed hop, the API tier in a network namespace "
        "(root only; latency by the proxy where the kernel has no netem; see above)",
    )
    parser.add_argument(
        "--clear",
        action="store_true",
        help="with --kernel: only take down what a killed kernel-mode run left (its network "
        "namespaces, veth pairs and iptables rules), then exit",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(".scenario"),
        metavar="DIR",
        help="the report, and logs/ with every process's log and the spans (.scenario)",
    )
    where = parser.add_argument_group("addresses")
    where.add_argument("--host", default="127.0.0.1", help="address everything listens on")
    for flag, default, what in (
        ("--web-port", 8800, "web tier"),
        ("--api-port", 8801, "API tier"),
        ("--proxy-port", 8802, "fault proxy, in front of the API tier"),
        ("--control-port", 8474, "fault proxy's control API"),
        ("--otlp-port", 4318, "collector's OTLP/HTTP"),
        ("--query-port", 16686, "collector's query API and trace pages"),
    ):
        where.add_argument(flag, type=port, default=default, help=f"{what} ({default})")


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The preset's faults with the fields given on top; UsageError if they cannot be, or if
    they do nothing."""
    faults = fault_flags.faults_from_args(args)
    if not faults.active:
        raise UsageError("no faults to inject; give --preset article or e.g. --latency 500ms")
    return faults


def config_from_args(args: argparse.Namespace) -> ScenarioConfig:
    faults = faults_from_args(args)
    phases = (
        Phase("baseline", args.baseline, Faults()),
        Phase("fault", args.fault, faults),
        Phase("recovery", args.recovery, Faults()),
    )
    for phase in phases:
        if phase.duration_s <= 2 * args.settle:
            raise UsageError(
                f"--{phase.name} {phase.duration_s:g}s leaves nothing to measure after "
                f"--settle {args.settle:g}s at either edge; make it longer than "
                f"{2 * args.settle:g}s"
            )
    ports = Ports(
        web=args.web_port,
        api=args.api_port,
        proxy=args.proxy_port,
        control=args.control_port,
        otlp=args.otlp_port,
        query=args.query_port,
    )
    _check_distinct(ports)
    if not math.isfinite(args.rate * args.api_timeout):
        raise UsageError("--rate times --api-timeout is too large")
    return ScenarioConfig(
        host=args.host,
        ports=ports,
        phases=phases,
        rate=args.rate,
        settle_s=args.settle,
        api_timeout_s=args.api_timeout,
        query_delay_ms=args.query_delay_ms,
        seed=args.seed,
        out=args.out,
        pin=args.pin,
        kernel=args.kernel,
    )


def _check_distinct(ports: Ports) -> None:
    seen: dict[int, str] = {}
    for flag, value in ports.flags():
        if value in seen:
            raise UsageError(f"{flag} {value} is also {seen[value]}; each needs its own port")
        seen[value] = flag


def run(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        print(f"netgap scenario: {message}", flush=True)

    if args.clear:
        return _clear(args, say)
    config = config_from_args(args)

    try:
        result = run_scenario(config, say)
    except (Interrupted, KeyboardInterrupt):
        print(
            "netgap scenario: interrupted; faults cleared, everything stopped",
            file=sys.stderr,
            flush=True,
        )
        return 130
    json_path, html_path = report.write(result, config.out)
    print()
    print(text.table(result))
    print(answers.summary_line(result.answers_by_phase()))
    print()
    print(result.diagnosis)
    if plots.testified(result):
        print(f"\nThe kernel (TCP_INFO): {diagnosis.kernel_note(result)}")
    print(f"\nreport: {html_path}\n  json: {json_path}", flush=True)
    return 0


def _clear(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if not args.kernel:
        raise UsageError("--clear goes with --kernel: the userspace mode leaves nothing behind")
    if os.geteuid() != 0:
        raise UsageError("--kernel --clear needs root (ip netns, iptables)")
    taken_down = kernel.clear_leftovers(say)
    say(f"cleared: {len(taken_down)} namespace(s) of ours" if taken_down else "nothing left over")
    return 0
