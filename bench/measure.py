"""Every measurement of a bench run, in the order it runs them.

Placement on a 2-core machine (as `netgap scenario` pins them): every API tier on the last
core, every web tier and the fault proxy on the first. wrk runs on the API's core when it
loads a web tier (the web tier does the most work per request, so it gets a core to itself),
and on the first core when it loads the API tier directly or through the proxy (the API tier
then gets a core to itself). The span sink and the lab's collector are not pinned. Comparisons
alternate their order round by round (A B, B A, ...), and each ratio is taken within a round,
then the median of the rounds is reported.
"""

import json
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import breakdown_api, leancost, stack, tcpcost
from bench.http import WrkResult, wrk
from bench.report import Figure
from netgap.aggregate import Aggregate
from netgap.analysis import build_report
from netgap.breakdown import break_down, edge_name
from netgap.collector.records import TraceQuery
from netgap.collector.store import Store
from netgap.model import Span
from netgap.trace_source import JaegerQuery

REMOTE = f"{edge_name('webtier', 'apitier')} remote"
# head sampling at 10%, as a user gets tracing nearly free with standard parts
SAMPLED_10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
TOGGLE = Path(__file__).parent / "toggle"  # its sitecustomize switches TCP_INFO in a tier
MS = 1e6  # ns per ms


@dataclass(frozen=True)
class Plan:
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


# -- noise: what else used the CPU while we measured


@dataclass
class Usage:
    wall_s: float = 0.0
    ours_s: float = 0.0  # our long-running children, wrk, this process
    other_s: float = 0.0  # everything else on the machine (another engineer's tests, ...)


class Meter:
    """Machine-wide busy CPU (/proc/stat) minus ours, over a `with` block."""

    def __init__(self, procs: Sequence[stack.Proc]) -> None:
        self.procs = procs
        self.wall_s = 0.0  # summed over every measured interval
        self.other_s = 0.0

    def _ours(self) -> float:
        total = 0.0
        for proc in self.procs:
            if proc.proc is not None and proc.proc.poll() is None:
                total += proc.cpu_s()
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    @contextmanager
    def measure(self) -> Iterator[Usage]:
        usage = Usage()
        ours, busy, wall = self._ours(), stack.machine_busy_s(), time.monotonic()
        yield usage
        usage.wall_s = time.monotonic() - wall
        usage.ours_s = self._ours() - ours
        usage.other_s = max(0.0, stack.machine_busy_s() - busy - usage.ours_s)
        self.wall_s += usage.wall_s
        self.other_s += usage.other_s

    def noise(self) -> str:
        """How much of the machine other processes took while we measured."""
        share = self.other_s / (self.wall_s * len(stack.cores())) if self.wall_s else 0.0
        return (
            f"other processes used {self.other_s:.0f} CPU-s over {self.wall_s:.0f} s of "
            f"measured intervals ({share:.0%} of the machine); per run in 'other_cpu_s'"
        )


# -- the run


@dataclass
class Run:
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
        self.procs: list[stack.Proc] = []
        self.meter = Meter(self.procs)
        self.toggles = self.logs / "toggle"  # bench/toggle's windows, a file per tier process

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def run(self) -> None:
        plan = self.plan
        sink, sink_url = stack.sink(self.logs)
        lab_collector, lab_otlp = stack.collector("collector", self.logs, self.logs / "traces.db")
        tier_otel = {"OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_SERVICE_NAME": ""}
        to_sink = {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url}
        # issue 16: the stock anchor and our tiers in each mode, all exporting to the sink
        stacks = {
            "stock": self._tiers("stock", to_sink, modules=("bench.stock.web", "bench.stock.api")),
            "untraced": self._tiers("untraced", {"OTEL_SDK_DISABLED": "true"}),
            "standard": self._tiers("standard", to_sink),
            "lean": self._tiers("lean", {**to_sink, "TRACING_MODE": "lean"}),
            "sampled": self._tiers("sampled", {**to_sink, **SAMPLED_10}),
        }
        traced = stacks["standard"]
        # issue 8: two fresh traced stacks, one without GET /metrics and its observations
        # (not the traced stack itself: by then it has served the rounds above, its twin none)
        metered = self._tiers("metered", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
        unmetered = self._tiers(
            "unmetered",
            {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url, "METRICS_ENABLED": "false"},
        )
        # issue 9: one traced stack switching TCP_INFO on and off inside each tier (bench/toggle)
        self.toggles.mkdir(parents=True, exist_ok=True)
        toggled = self._tiers("toggled", {
            **tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "PYTHONPATH": str(TOGGLE), "NETGAP_BENCH_TOGGLE_DIR": str(self.toggles),
        })  # fmt: skip
        # the control: two identical traced stacks, measured as the pairs above are, show how
        # far apart this machine puts the same code (on/off ratios inside that are noise)
        twin_a = self._tiers("twin-a", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
        twin_b = self._tiers("twin-b", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
        lab = self._tiers("lab", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": lab_otlp})
        lab_lean = self._tiers("lab-lean", {
            **tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": lab_otlp, "TRACING_MODE": "lean",
        })  # fmt: skip
        # item 4's API tier: untraced and no query delay, the cheapest upstream there is, so
        # the proxy's share of each exchange is as large as it can be
        bare = stack.tiers(
            "bare", self.logs, query_delay_ms=0, otel={"OTEL_SDK_DISABLED": "true"},
            web_cpus=self.first, api_cpus=self.last,
        ).api  # fmt: skip
        first = [
            sink, lab_collector,
            *self._procs(*stacks.values(), metered, unmetered, toggled, twin_a, twin_b, lab),
            *self._procs(lab_lean),
            bare
        ]  # fmt: skip
        self.procs.extend(first)
        self.placement = {
            "web tiers, fault proxy": _cpus(self.first),
            "API tiers": _cpus(self.last),
            "wrk -> web tier": _cpus({self.wrk_on_last} if self.wrk_on_last is not None else None),
            "wrk -> API tier or proxy": _cpus(
                {self.wrk_on_first} if self.wrk_on_first is not None else None
            ),
            "span sink, lab collector": "any",
        }
        self.say("starting the tiers (five stacks, the pairs, labs), the sink, the collector ...")
        with stack.running(*first):
            proxy, proxy_port = stack.proxy(self.logs, _port(bare), self.first)
            self.procs.append(proxy)
            with stack.running(proxy):
                direct_url, proxied_url = stack.url(_port(bare)), stack.url(proxy_port)
                self.say("warming up ...")
                for target, cpu in (
                    *((tiers.url, self.wrk_on_last) for tiers in stacks.values()),
                    (lab_lean.url, self.wrk_on_last),
                    (metered.url, self.wrk_on_last),
                    (unmetered.url, self.wrk_on_last),
                    (toggled.url, self.wrk_on_last),
                    (twin_a.url, self.wrk_on_last),
                    (twin_b.url, self.wrk_on_last),
                    (lab.url, self.wrk_on_last),
                    (direct_url, self.wrk_on_first),
                    (proxied_url, self.wrk_on_first),
                ):
                    wrk(target, plan.connections, plan.warm_up_s, cpu)
                self.tracing_cost(stacks)
                self.on_off_cost("metrics", metered, unmetered)
                self.tcp_info_in_place(toggled)
                self.on_off_cost("control", twin_a, twin_b)
                self.proxy_cost(direct_url, proxied_url)
                floor_windows = self.floor_traffic(lab)
                lean_windows = self.floor_traffic(lab_lean)
                self.soak(lab)
                time.sleep(1.5)  # the tiers export every 0.5 s
                self.floor(stack.query_url(lab_collector), floor_windows, "standard", 0.5)
                self.floor(stack.query_url(lab_collector), lean_windows, "lean", 0.25)
                self.breakdown_over_http(stack.query_url(lab_collector), floor_windows)
            self.notes.extend(_span_drops(traced, lab))
        self.say("collector ingest ...")
        self.ingest()
        self.say("breakdown speed ...")
        self.breakdown_from_store(self.logs / "traces.db")
        self.say("breakdown over api_v3 (issue 18) ...")
        traces = min(breakdown_api.TRACES, self.plan.breakdown_traces)
        api = breakdown_api.measure(self.logs, traces=traces, rounds=self.plan.rounds, say=self.say)
        self.add(*api.figures())
        self.rounds["breakdown_api"] = api.to_dict()
        self.say("raw-socket proxy cost ...")
        self.raw_proxy()
        self.tcp_info_cost()
        self.lean_pieces()
        self.notes.append(self.meter.noise())

    def _tiers(
        self, label: str, otel: dict[str, str], modules: tuple[str, str] = ("webtier", "apitier")
    ) -> stack.Tiers:
        otel = {k: v for k, v in otel.items() if v}
        return stack.tiers(
            label, self.logs, query_delay_ms=self.plan.query_delay_ms, otel=otel,
            web_cpus=self.first, api_cpus=self.last, modules=modules,
        )  # fmt: skip

    @staticmethod
    def _procs(*groups: stack.Tiers) -> list[stack.Proc]:
        return [p for g in groups for p in (g.api, g.web)]

    def _load(self, tiers: stack.Tiers, connections: int, seconds: float) -> dict[str, Any]:
        """One wrk run on the web tier, with both tiers' CPU and the machine's other CPU."""
        cpu = tiers.cpu_s()
        with self.meter.measure() as usage:
            result = wrk(tiers.url, connections, seconds, self.wrk_on_last)
        cpu = tiers.cpu_s() - cpu
        return {
            "stack": tiers.label,
            **_wrk_dict(result),
            "tiers_cpu_s": round(cpu, 3),
            "cpu_s_per_1000": round(cpu / max(result.requests, 1) * 1000, 4),
            "other_cpu_s": round(usage.other_s, 2),
        }

    # -- items 1 and 2

    def tracing_cost(self, stacks: dict[str, stack.Tiers]) -> None:
        """Issue 16's five stacks side by side at load (the stock anchor, untraced, standard,
        lean, standard at 10% sampling), each round in a rotated order; ratios within each
        round. Serially, standard and untraced (item 2 and the floor's context)."""
        plan = self.plan
        labels = list(stacks)
        self.say(f"{', '.join(labels)}: {plan.rounds} rounds ...")
        runs: list[dict[str, Any]] = []
        pairs: list[dict[str, float]] = []
        for i in range(plan.rounds):
            order = labels[i % len(labels) :] + labels[: i % len(labels)]
            loaded = {label: self._load(stacks[label], plan.connections, plan.load_s)
                      for label in order}  # fmt: skip
            serial = {label: self._load(stacks[label], 1, plan.serial_s)
                      for label in order if label in ("standard", "untraced")}  # fmt: skip
            runs.extend({"round": i + 1, "connections": plan.connections, **loaded[label]}
                        for label in labels)  # fmt: skip
            runs.extend({"round": i + 1, "connections": 1, **serial[label]} for label in serial)
            pair = _stack_ratios(loaded, serial)
            pairs.append({k: round(v, 4) for k, v in pair.items()})
            self.say(f"  round {i + 1}: " + ", ".join(
                f"{label} {loaded[label]['rate']:.0f} req/s {loaded[label]['cpu_s_per_1000']:.3f}"
                f" CPU-s/1000" for label in labels
            ))  # fmt: skip
        self.rounds["tracing"] = {"runs": runs, "pairs": pairs}

        def med(label: str, connections: int, key: str) -> float:
            return float(
                statistics.median(
                    r[key] for r in runs if r["stack"] == label and r["connections"] == connections
                )
            )

        def ratio(key: str) -> float:
            return float(statistics.median(p[key] for p in pairs))

        c = plan.connections
        delay = plan.query_delay_ms
        self.traced_cpu_per_request_s = med("standard", c, "cpu_s_per_1000") / 1000
        self.stack_cpu_s = {label: med(label, c, "cpu_s_per_1000") / 1000 for label in labels}
        self.add(
            *(Figure(1, f"  {label}: throughput, {c} connections", med(label, c, "rate"),
                     "req/s") for label in labels),
            *(Figure(1, f"  {label}: CPU per 1000 requests, both tiers",
                     med(label, c, "cpu_s_per_1000"), "s") for label in labels),
            Figure(1, "standard/stock CPU per request", ratio("standard_stock_cpu"), "", "<=",
                   0.45),
            Figure(1, "lean/stock CPU per request", ratio("lean_stock_cpu"), "", "<=", 0.3),
            Figure(1, f"standard/stock throughput, {c} connections",
                   ratio("standard_stock_rate"), "", ">=", 2.5),
            Figure(1, "sampled 10%/untraced CPU per request", ratio("sampled_cpu"), "", "<=",
                   1.15),
            Figure(1, f"sampled 10%/untraced throughput, {c} connections",
                   ratio("sampled_rate"), "", ">=", 0.87),
            Figure(1, f"standard/untraced throughput, {c} connections",
                   ratio("throughput_ratio"), ""),
            Figure(1, "standard/untraced CPU per request", ratio("cpu_ratio"), ""),
            Figure(1, "  standard/untraced CPU per request (serial)",
                   ratio("serial_cpu_ratio"), ""),
            Figure(1, "lean/standard CPU per request", ratio("lean_standard_cpu"), ""),
            Figure(1, "serial p50 standard", med("standard", 1, "p50_ms"), "ms"),
            Figure(1, "serial p99 standard", med("standard", 1, "p99_ms"), "ms"),
            Figure(1, "serial p50 untraced", med("untraced", 1, "p50_ms"), "ms"),
            Figure(1, "serial p99 untraced", med("untraced", 1, "p99_ms"), "ms"),
            Figure(2, f"serial standard p50 - QUERY_DELAY_MS ({delay:g} ms)",
                   med("standard", 1, "p50_ms") - delay, "ms"),
        )  # fmt: skip

    def on_off_cost(self, what: str, on: stack.Tiers, off: stack.Tiers) -> None:
        """Issue 8's and 9's: throughput and CPU per request with a feature on vs off, both
        stacks traced and fresh, `what` naming the feature (ON_OFF)."""
        plan = self.plan
        title, issue, target = ON_OFF[what]
        # Many rounds at a third of the length (a full run: three times its other rounds; a
        # quick one, a smoke run, two): a difference of a few percent needs
        # many pairs close together in time, as this machine's CPU speed drifts by tens of
        # percent in minutes (rounds of one run ranged 0.90-1.08 for the same code).
        rounds, seconds = plan.on_off_rounds, max(1.0, plan.load_s / 3)
        self.say(f"{title} (both traced): {rounds} rounds of {seconds:g} s ...")
        runs: list[dict[str, Any]] = []
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        for i in range(rounds):
            order = (on, off) if i % 2 == 0 else (off, on)
            loaded = {t.label: self._load(t, plan.connections, seconds) for t in order}
            runs.extend({"round": i + 1, **loaded[t.label]} for t in (on, off))
            a, b = loaded[on.label], loaded[off.label]
            ratios.append(round(a["rate"] / b["rate"], 4))
            cpu_ratios.append(round(a["cpu_s_per_1000"] / b["cpu_s_per_1000"], 4))
            self.say(
                f"  round {i + 1}: {a['rate']:.0f} vs {b['rate']:.0f} req/s "
                f"({ratios[-1]:.3f}), CPU/request {cpu_ratios[-1]:.3f}"
            )
        self.rounds[what] = {
            "on": on.label, "off": off.label, "runs": runs, "ratios": ratios,
            "cpu_ratios": cpu_ratios,
        }  # fmt: skip
        self.add(
            Figure(1, f"{title} throughput, traced, {plan.connections} conn. ({issue})",
                   statistics.median(ratios), "", ">=" if target else None, target),
            Figure(1, f"  {title} CPU per request, both tiers",
                   statistics.median(cpu_ratios), ""),
        )  # fmt: skip

    def tcp_info_in_place(self, toggled: stack.Tiers) -> None:
        """Issue 9's in place: CPU per request of each tier of one loaded stack, in the windows
        TCP_INFO was on less those it was off (bench/toggle); as the noise beside it, the same
        split between alternate windows of one state (an A/A)."""
        seconds = self.plan.in_place_s
        self.say(f"TCP_INFO in place: {seconds:g} s on a stack switching it every ~0.5 s ...")
        started = time.time()
        run = self._load(toggled, self.plan.connections, seconds)
        ended = time.time()
        time.sleep(1.0)  # the last window is written
        found: dict[str, dict[str, float]] = {}
        for proc in (toggled.web, toggled.api):
            windows = [
                w for w in json.loads((self.toggles / f"{proc.pid}.json").read_text())
                if started + 1.0 <= w["at"] <= ended and w["requests"]
            ]  # fmt: skip
            found[proc.name] = _switched_cost(windows)
        self.rounds["tcp_info_in_place"] = {"run": run, "tiers": found}
        self.say("  " + "; ".join(
            f"{name}: {f['cost_us']:.1f} us/request (A/A {f['aa_us']:.1f})"
            for name, f in found.items()
        ))  # fmt: skip
        total = sum(f["cost_us"] for f in found.values())
        noise = sum(f["aa_us"] for f in found.values())
        self.add(
            Figure(1, "  TCP_INFO in place, per request, both tiers (issue 9)", total, "us"),
            Figure(1, "    its share of the stack's CPU per request",
                   100 * total / (run["cpu_s_per_1000"] * 1000), "%"),
            Figure(1, "    the same split with no switch (A/A: the noise)", noise, "us"),
        )  # fmt: skip

    def lean_pieces(self) -> None:
        """Issue 16: what each lean piece saves of a traced (standard) request's CPU; a piece
        under 5% is to be deleted. The encoder alone (bench/leancost.py); the spans (and the
        head stamp they start from) as the rest of lean's saving against standard."""
        self.say("lean mode's encoder alone ...")
        cost = leancost.measure(requests=256 if self.plan is QUICK else 2048)
        standard = self.stack_cpu_s.get("standard", 0.0) * 1e9
        lean = self.stack_cpu_s.get("lean", 0.0) * 1e9
        if not standard:
            return
        encoder_share = 100 * cost.saved_ns / standard
        spans_share = 100 * ((standard - lean) - cost.saved_ns) / standard
        self.rounds["lean_pieces"] = {
            "sdk_encode_ns": cost.sdk_ns, "lean_encode_ns": cost.lean_ns,
            "standard_ns": standard, "lean_ns": lean,
        }  # fmt: skip
        self.add(
            Figure(1, "lean encoder: saving per request, % of a standard request's CPU",
                   encoder_share, "%", ">=", 5),
            Figure(1, "  OTLP encoding per request (5 spans), SDK vs lean",
                   cost.sdk_ns / 1000, "us", note=f"lean {cost.lean_ns / 1000:.1f} us"),
            Figure(1, "lean spans + head stamp: saving, % of a standard request's CPU",
                   spans_share, "%", ">=", 5),
        )  # fmt: skip

    # -- item 4

    def proxy_cost(self, direct_url: str, proxied_url: str) -> None:
        plan = self.plan
        self.say(f"fault proxy, no faults, vs direct: {plan.rounds} rounds ...")
        runs: list[dict[str, Any]] = []
        pairs: list[dict[str, float]] = []
        targets = {"direct": direct_url, "proxy": proxied_url}
        for i in range(plan.rounds):
            order = ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")
            got: dict[tuple[str, int], dict[str, Any]] = {}
            for connections in (plan.connections, 1):
                for via in order:
                    with self.meter.measure() as usage:
                        result = wrk(targets[via], connections, plan.proxy_s, self.wrk_on_first)
                    got[via, connections] = {
                        "round": i + 1,
                        "via": via,
                        **_wrk_dict(result),
                        "other_cpu_s": round(usage.other_s, 2),
                    }
            runs.extend(got.values())
            c = plan.connections
            pair = {
                "throughput_ratio": got["proxy", c]["rate"] / got["direct", c]["rate"],
                "added_p50_ms": got["proxy", 1]["p50_ms"] - got["direct", 1]["p50_ms"],
                "added_p50_ms_loaded": got["proxy", c]["p50_ms"] - got["direct", c]["p50_ms"],
            }
            pairs.append({k: round(v, 4) for k, v in pair.items()})
            self.say(
                f"  round {i + 1}: {got['proxy', c]['rate']:.0f} vs {got['direct', c]['rate']:.0f}"
                f" req/s ({pair['throughput_ratio']:.3f}), serial p50 "
                f"{got['proxy', 1]['p50_ms']:.3f} vs {got['direct', 1]['p50_ms']:.3f} ms"
            )
        self.rounds["proxy"] = {"runs": runs, "pairs": pairs}
        self.add(
            Figure(4, "proxy: added p50 (serial, HTTP to the API tier)",
                   statistics.median(p["added_p50_ms"] for p in pairs), "ms", "<=", 0.1),
            Figure(4, f"proxy: throughput / direct ({plan.connections} connections)",
                   statistics.median(p["throughput_ratio"] for p in pairs), "", ">=", 0.9),
            Figure(4, "  direct throughput (API tier, no delay, untraced)", statistics.median(
                r["rate"] for r in runs if r["via"] == "direct"
                and r["connections"] == plan.connections), "req/s"),
        )  # fmt: skip

    def raw_proxy(self) -> None:
        """tests/netgap/fault/bench.py's zero-fault figures: the proxy alone, raw sockets."""
        from tests.netgap.fault.bench import zero_fault  # a test helper: imported late

        added_s, ratio = zero_fault(max(1, min(self.plan.rounds, 3)))
        self.rounds["proxy_raw"] = {"added_p50_s": added_s, "bulk_ratio": ratio}
        self.add(
            Figure(4, "  proxy: added p50, raw 100 B round trip", added_s * 1000, "ms"),
            Figure(4, "  proxy: bulk upload throughput / direct, raw", ratio, ""),
        )

    def tcp_info_cost(self) -> None:
        """Issue 9's: what the kernel's testimony adds to a request, both ends, in full (bench/
        tcpcost.py), and its share of a traced request's CPU measured above."""
        cost = tcpcost.measure(self.plan.rounds)
        if cost is None:
            self.notes.append("TCP_INFO cost: not measured (no TCP_INFO off Linux)")
            return
        self.rounds["tcp_info_ns"] = cost.blocks
        self.add(
            Figure(1, "  TCP_INFO per request, in full (both ends; issue 9)", cost.total_ns, "ns"),
            Figure(1, "    read: getsockopt + parse, per end", cost.read_ns / 2, "ns"),
            Figure(1, "    ten span attributes (SDK set_attributes), per end",
                   cost.attributes_ns / 2, "ns"),
            Figure(1, "    their OTLP encoding, per end", cost.encode_ns / 2, "ns"),
            Figure(1, "    srtt and retransmission metrics (web tier)", cost.metrics_ns, "ns"),
        )  # fmt: skip
        if self.traced_cpu_per_request_s:
            share = cost.total_ns / (self.traced_cpu_per_request_s * 1e9)
            self.add(Figure(1, "    its share of a traced request's CPU", 100 * share, "%"))

    # -- item 3

    def floor_traffic(self, lab: stack.Tiers) -> list[dict[str, Any]]:
        self.say(f"remote-calls floor: {self.plan.rounds} serial runs on {lab.label} ...")
        windows = []
        for i in range(self.plan.rounds):
            run = self._load(lab, 1, self.plan.floor_s)
            windows.append({"round": i + 1, **run})
        return windows

    def floor(self, query: str, windows: list[dict[str, Any]], mode: str, limit: float) -> None:
        with JaegerQuery(query) as source:
            for w in windows:
                start, end = int(w["started"] * 1e9), int(w["ended"] * 1e9)
                summary = build_report(source, "webtier", start, end)["summary"]
                remote = summary["components"].get(REMOTE, {})
                w["traces"] = summary["traces"]
                w["remote_p50_ms"] = remote.get("p50", 0) / MS
                w["remote_p99_ms"] = remote.get("p99", 0) / MS
                w["traces_with_warnings"] = summary["data_quality"]["traces_with_warnings"]
                for name in ("webtier self", "apitier self", "total"):
                    w[f"{name.replace(' ', '_')}_p50_ms"] = (
                        summary["components"].get(name, {}).get("p50", 0) / MS
                    )
        self.rounds[f"floor_{mode}"] = windows
        self.say(
            f"  {mode}: remote p50 per round: "
            + ", ".join(f"{w['remote_p50_ms']:.3f}" for w in windows)
            + " ms"
        )
        self.add(
            Figure(3, f"remote-calls floor p50, {mode} (webtier->apitier)",
                   statistics.median(w["remote_p50_ms"] for w in windows), "ms", "<=", limit),
            Figure(3, f"remote-calls floor p99, {mode} (webtier->apitier)",
                   statistics.median(w["remote_p99_ms"] for w in windows), "ms"),
        )  # fmt: skip

    # -- item 6

    def soak(self, lab: stack.Tiers) -> None:
        plan = self.plan
        self.say(f"RSS: {plan.soak_s:g} s at {plan.connections} connections on the lab stack ...")
        samples = [{"t_s": 0.0, "web_mb": lab.web.rss_mb(), "api_mb": lab.api.rss_mb()}]
        started = time.monotonic()
        requests = 0
        while time.monotonic() - started < plan.soak_s - 0.5:
            step = min(plan.soak_step_s, plan.soak_s - (time.monotonic() - started))
            result = wrk(lab.url, plan.connections, max(1.0, step), self.wrk_on_last)
            requests += result.requests
            samples.append(
                {
                    "t_s": round(time.monotonic() - started, 1),
                    "web_mb": lab.web.rss_mb(),
                    "api_mb": lab.api.rss_mb(),
                    "rate": round(result.rate, 1),
                }
            )
        self.rounds["rss"] = {"samples": samples, "requests": requests}
        first, last = samples[0], samples[-1]
        after = f"after {last['t_s']:.0f} s at load"
        self.add(
            Figure(6, f"web tier RSS {after}", last["web_mb"], "MB", "<=", 100),
            Figure(6, f"API tier RSS {after}", last["api_mb"], "MB", "<=", 100),
            Figure(6, "  web tier RSS growth over it", last["web_mb"] - first["web_mb"], "MB"),
            Figure(6, "  API tier RSS growth over it", last["api_mb"] - first["api_mb"], "MB"),
        )  # fmt: skip

    # -- item 5

    def ingest(self) -> None:
        """tests/netgap/collector/bench.py's set-up: the collector pinned to the first core on
        a fresh store, one client (this process) on the other, posting pre-built OTLP/HTTP
        protobuf requests of 512 spans back to back, the two tiers' parts of traces in turn."""
        from tests.netgap.collector.bench import WINDOW_NS, request_bodies  # imported late

        plan = self.plan
        rnd = random.Random(1)  # noqa: S311  (span ids, not secrets)
        total = plan.ingest_rounds * plan.ingest_batches + 1
        bodies = request_bodies(total, plan.ingest_spans, time.time_ns() - WINDOW_NS, rnd)
        proc, otlp = stack.collector(
            "ingest-collector", self.logs, self.logs / "ingest.db", self.first
        )
        self.procs.append(proc)
        runs = []
        mine = stack.cores()
        with (
            stack.running(proc),
            httpx.Client(headers={"content-type": "application/x-protobuf"}, timeout=30) as client,
        ):
            if self.last:
                os.sched_setaffinity(0, self.last)
            try:
                endpoint = otlp + "/v1/traces"
                client.post(endpoint, content=bodies[0]).raise_for_status()  # warm up
                for i in range(plan.ingest_rounds):
                    batch = bodies[1 + i * plan.ingest_batches : 1 + (i + 1) * plan.ingest_batches]
                    cpu = proc.cpu_s()
                    with self.meter.measure() as usage:
                        for body in batch:
                            client.post(endpoint, content=body).raise_for_status()
                    spans = len(batch) * plan.ingest_spans
                    cpu = proc.cpu_s() - cpu
                    runs.append({
                        "round": i + 1, "spans": spans, "seconds": round(usage.wall_s, 3),
                        "spans_per_s": round(spans / usage.wall_s),
                        "collector_cpu_us_per_span": round(cpu / spans * 1e6, 2),
                        "other_cpu_s": round(usage.other_s, 2),
                    })  # fmt: skip
            finally:
                os.sched_setaffinity(0, set(mine))
        self.rounds["ingest"] = runs
        self.say("  spans/s per round: " + ", ".join(f"{r['spans_per_s']:,}" for r in runs))
        self.add(
            Figure(5, "collector ingest, OTLP/HTTP protobuf, one core",
                   statistics.median(r["spans_per_s"] for r in runs), "spans/s", ">=", 20_000),
            Figure(5, "  collector CPU per span",
                   statistics.median(r["collector_cpu_us_per_span"] for r in runs), "us"),
        )  # fmt: skip

    # -- item 5, the breakdown

    def breakdown_over_http(self, query: str, windows: list[dict[str, Any]]) -> None:
        """As `netgap breakdown` reads: api_v3 over HTTP, JSON decoded, broken down."""
        start = int(windows[0]["started"] * 1e9)
        started = time.perf_counter()
        with JaegerQuery(query) as source:
            summary = build_report(
                source, "webtier", start, time.time_ns(), limit=self.plan.breakdown_traces // 5
            )["summary"]
        seconds = time.perf_counter() - started
        self.rounds["breakdown_http"] = {"traces": summary["traces"], "seconds": seconds}
        self.http_rate = summary["traces"] / seconds

    def breakdown_from_store(self, db: Path) -> None:
        """The figure: Store.find_breakdowns (the lean read: one kept row per trace of the
        common shape, worked out by break_down's fast path when the trace was written)
        + Aggregate, end to end. Beside it: the arithmetic alone (break_down + Aggregate on
        spans already decoded) and the full-decode read it replaces (Store.find_traces, every
        span decoded, then break_down), which must give the very same summary."""
        plan = self.plan
        runs: list[dict[str, Any]] = []
        arithmetic: list[dict[str, Any]] = []
        query = TraceQuery(
            start_min_ns=0, start_max_ns=2**62, service="webtier", limit=plan.breakdown_traces
        )
        with Store(db) as store:
            # The timed rounds first: the full decode's 50k span objects, alive beside them,
            # would make every garbage collection in them walk those too.
            for i in range(max(1, plan.rounds)):
                with self.meter.measure() as usage:
                    aggregate = Aggregate().add_all(store.find_breakdowns(query))
                    summary = aggregate.summary()
                runs.append({
                    "round": i + 1, "traces": aggregate.traces,
                    "seconds": round(usage.wall_s, 3),
                    "traces_per_s": round(aggregate.traces / usage.wall_s),
                    "other_cpu_s": round(usage.other_s, 2),
                })  # fmt: skip
            started = time.perf_counter()
            traces = _grouped(store.find_traces(query))
            reference = _break_down_all(traces)
            full_seconds = time.perf_counter() - started
        for i in range(max(1, min(plan.rounds, 3))):
            started = time.perf_counter()
            _break_down_all(traces)
            seconds = time.perf_counter() - started
            arithmetic.append({
                "round": i + 1, "traces": reference.traces, "seconds": round(seconds, 3),
                "traces_per_s": round(reference.traces / seconds),
            })  # fmt: skip
        self.rounds["breakdown_store"] = runs
        self.rounds["breakdown_arithmetic"] = arithmetic
        self.rounds["breakdown_full_decode"] = {
            "traces": reference.traces, "seconds": round(full_seconds, 3)
        }  # fmt: skip
        same = summary == reference.summary()
        spans = sum(len(t) for t in traces)
        self.notes.append(
            f"breakdown: {aggregate.traces} real traces of the lab stack ({spans} spans) per "
            "round, read with Store.find_breakdowns (SQLite: for a trace of the common shape "
            "one row, the answer of break_down's fast path kept when the trace was written, "
            "so ingest pays for it and is measured with it; break_down for any other) + "
            "Aggregate; the target applies to this end-to-end figure. Its summary "
            + ("equals" if same else "DIFFERS FROM")
            + " that of Store.find_traces (every span decoded) + break_down + Aggregate"
        )
        self.say("  traces/s per round: " + ", ".join(f"{r['traces_per_s']:,}" for r in runs))
        self.add(
            Figure(5, "breakdown from the store (read, decode, break down)",
                   statistics.median(r["traces_per_s"] for r in runs), "traces/s", ">=", 50_000),
            Figure(5, "  breakdown arithmetic alone (break_down + Aggregate, decoded spans)",
                   statistics.median(r["traces_per_s"] for r in arithmetic), "traces/s"),
            Figure(5, "  breakdown from the store, every span decoded (find_traces)",
                   reference.traces / full_seconds, "traces/s"),
            Figure(5, "  breakdown over HTTP api_v3 (netgap breakdown's path)",
                   self.http_rate, "traces/s"),
        )  # fmt: skip


# what -> its title, the issue that asks for it and the throughput ratio it must keep (None:
# no target of its own; issue 9 asks that the traced/untraced targets hold with it)
ON_OFF: dict[str, tuple[str, str, float | None]] = {
    "metrics": ("metrics on/off", "issue 8", 0.97),
    "control": ("control: twin stacks a/b", "the noise floor", None),
}


def _stack_ratios(
    loaded: dict[str, dict[str, Any]], serial: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """One round's ratios between the five stacks (issue 16's targets, and the old
    traced/untraced ones kept for reference)."""

    def cpu(label: str) -> float:
        return float(loaded[label]["cpu_s_per_1000"])

    def rate(label: str) -> float:
        return float(loaded[label]["rate"])

    return {
        "standard_stock_cpu": cpu("standard") / cpu("stock"),
        "lean_stock_cpu": cpu("lean") / cpu("stock"),
        "standard_stock_rate": rate("standard") / rate("stock"),
        "sampled_cpu": cpu("sampled") / cpu("untraced"),
        "sampled_rate": rate("sampled") / rate("untraced"),
        "throughput_ratio": rate("standard") / rate("untraced"),
        "cpu_ratio": cpu("standard") / cpu("untraced"),
        "lean_standard_cpu": cpu("lean") / cpu("standard"),
        "serial_cpu_ratio": serial["standard"]["cpu_s_per_1000"]
        / serial["untraced"]["cpu_s_per_1000"],
    }


def _grouped(spans: list[Span]) -> list[list[Span]]:
    """find_traces gives each trace's spans together."""
    traces: list[list[Span]] = []
    last = None
    for span in spans:
        if span.trace_id != last:
            traces.append([])
            last = span.trace_id
        traces[-1].append(span)
    return traces


def _break_down_all(traces: list[list[Span]]) -> Aggregate:
    aggregate = Aggregate()
    for spans in traces:
        breakdown = break_down(spans)
        if breakdown is not None:
            aggregate.add(breakdown)
    aggregate.summary()
    return aggregate


def _switched_cost(windows: list[dict[str, Any]]) -> dict[str, float]:
    """us of CPU per request with the feature on less off; and, as the noise beside it, the
    larger of (alternate on-windows) and (alternate off-windows) told apart the same way."""

    def per_request_us(group: list[dict[str, Any]]) -> float:
        requests = sum(int(w["requests"]) for w in group)
        return 1e6 * sum(float(w["cpu_s"]) for w in group) / max(requests, 1)

    on = [w for w in windows if w["on"]]
    off = [w for w in windows if not w["on"]]
    aa = max(abs(per_request_us(group[::2]) - per_request_us(group[1::2])) for group in (on, off))
    return {
        "cost_us": per_request_us(on) - per_request_us(off),
        "aa_us": aa,
        "on_us": per_request_us(on),
        "off_us": per_request_us(off),
        "windows": len(windows),
    }


def _port(proc: stack.Proc) -> int:
    return int(proc.env["PORT"])


def _cpus(cpus: set[int] | None) -> str:
    return "any" if not cpus else "CPU " + ",".join(str(c) for c in sorted(cpus))


def _wrk_dict(result: WrkResult) -> dict[str, Any]:
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


def _span_drops(*groups: stack.Tiers) -> list[str]:
    notes = []
    for group in groups:
        for proc in (group.web, group.api):
            text = proc.log.read_text(errors="replace")
            if "Queue is full" in text or "dropp" in text.lower():
                notes.append(f"{proc.name}: its log mentions dropped spans (see {proc.log})")
    return notes
