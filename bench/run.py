"""A bench run: its plan (how long and how often), where its processes run, and what it
collects (figures, every round, notes); with the one measured wrk run every comparison uses.

Placement on a 2-core machine (as `netgap scenario` pins them): every API tier on the last
core, every web tier and the fault proxy on the first. wrk runs on the API's core when it
loads a web tier (the web tier does the most work per request, so it gets a core to itself),
and on the first core when it loads the API tier directly or through the proxy (the API tier
then gets a core to itself). The span sink and the lab's collector are not pinned.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stack
from bench.http import WrkResult, wrk
from bench.meter import Meter
from bench.report import Figure
from netgap.supervisor import Child


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs, and how many rounds: FULL (`make bench`) or QUICK."""

    rounds: int
    load_s: float  # each wrk run at 32 connections (item 1)
    serial_s: float  # each wrk run on one connection (items 1 and 2)
    proxy_s: float  # each wrk run of item 4
    floor_s: float  # each serial run whose traces give the floor (item 3)
    soak_s: float  # item 6
    soak_step_s: float  # RSS sampled this often during it
    ingest_rounds: int
    ingest_batches: int  # export requests per ingest round
    ingest_spans: int  # spans per export request
    breakdown_traces: int  # traces read from the store per breakdown round
    warm_up_s: float
    on_off_rounds: int  # rounds of each on/off pair (issues 8 and 9)
    in_place_s: float  # the stack switching TCP_INFO inside its tiers (issue 9)
    connections: int = 32
    query_delay_ms: float = 2.0


FULL = Plan(
    rounds=5, load_s=6, serial_s=4, proxy_s=3, floor_s=4, soak_s=60, soak_step_s=5,
    ingest_rounds=3, ingest_batches=100, ingest_spans=512, breakdown_traces=10_000, warm_up_s=2,
    on_off_rounds=15, in_place_s=60,
)  # fmt: skip
QUICK = Plan(
    rounds=2, load_s=1, serial_s=1, proxy_s=1, floor_s=1, soak_s=2, soak_step_s=1,
    ingest_rounds=2, ingest_batches=8, ingest_spans=512, breakdown_traces=1000, warm_up_s=1,
    on_off_rounds=2, in_place_s=4,
)  # fmt: skip

Say = Callable[[str], None]


@dataclass
class Run:
    """One bench run: its plan, the cores it pins to, its processes (for the noise meter),
    and what the measurements leave (figures, every round, notes, figures later ones use)."""

    plan: Plan
    logs: Path
    say: Say
    figures: list[Figure] = field(default_factory=list)
    rounds: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    placement: dict[str, str] = field(default_factory=dict)
    http_rate: float = 0.0  # traces/s of the breakdown over HTTP
    traced_cpu_per_request_s: float = 0.0  # both tiers, at load, standard mode (item 1)
    stack_cpu_s: dict[str, float] = field(default_factory=dict)  # per request, each stack

    def __post_init__(self) -> None:
        cores = stack.cores()
        two = len(cores) >= 2
        self.first: set[int] | None = {cores[0]} if two else None
        self.last: set[int] | None = {cores[-1]} if two else None
        self.wrk_on_last = cores[-1] if two else None
        self.wrk_on_first = cores[0] if two else None
        self.procs: list[Child] = []
        self.meter = Meter(self.procs)
        self.toggles = self.logs / "toggle"  # bench/toggle's windows, a file per tier process

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def tiers(
        self, label: str, otel: dict[str, str], modules: tuple[str, str] = ("webtier", "apitier")
    ) -> stack.Tiers:
        otel = {k: v for k, v in otel.items() if v}
        return stack.tiers(
            label, self.logs, query_delay_ms=self.plan.query_delay_ms, otel=otel,
            web_cpus=self.first, api_cpus=self.last, modules=modules,
        )  # fmt: skip

    def load(self, tiers: stack.Tiers, connections: int, seconds: float) -> dict[str, Any]:
        """One wrk run on the web tier, with both tiers' CPU and the machine's other CPU."""
        cpu = tiers.cpu_s()
        with self.meter.measure() as usage:
            result = wrk(tiers.url, connections, seconds, self.wrk_on_last)
        cpu = tiers.cpu_s() - cpu
        return {
            "stack": tiers.label,
            **wrk_dict(result),
            "tiers_cpu_s": round(cpu, 3),
            "cpu_s_per_1000": round(cpu / max(result.requests, 1) * 1000, 4),
            "other_cpu_s": round(usage.other_s, 2),
        }


def wrk_dict(result: WrkResult) -> dict[str, Any]:
    return {
        "connections": result.connections,
        "requests": result.requests,
        "errors": result.errors,
        "seconds": round(result.duration_s, 3),
        "rate": round(result.rate, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "started": result.started,
        "ended": result.ended,
    }
