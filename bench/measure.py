"""Every measurement of a bench run, in the order it runs them: the processes lined up (the
span sink, the lab's collector, every stack of tiers, the fault proxy), warmed up, measured
while they run (bench/tracing.py, bench/proxycost.py, bench/floor.py, bench/rss.py), then
what needs none of them (bench/ingest.py, bench/breakdown_speed.py, bench/breakdown_api.py,
the raw-socket proxy, TCP_INFO's and lean's pieces). Where each process runs: bench/run.py.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from bench import breakdown_api, floor, proxycost, rss, stack, tracing
from bench.breakdown_speed import breakdown_from_store, breakdown_over_http
from bench.http import wrk
from bench.ingest import ingest
from bench.run import Run
from netgap.lab import running
from netgap.supervisor import Child

# head sampling at 10%, as a user gets tracing nearly free with standard parts
SAMPLED_10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
TOGGLE = Path(__file__).parent / "toggle"  # its sitecustomize switches TCP_INFO in a tier


@dataclass(frozen=True)
class LineUp:
    """The stacks of tiers a run measures, and the bare API tier behind the fault proxy."""

    stacks: dict[str, stack.Tiers]  # issue 16's five, in the order they are compared
    metered: stack.Tiers
    unmetered: stack.Tiers
    toggled: stack.Tiers
    twin_a: stack.Tiers
    twin_b: stack.Tiers
    lab: stack.Tiers
    lab_lean: stack.Tiers
    bare: Child

    def procs(self) -> list[Child]:
        groups = (*self.stacks.values(), self.metered, self.unmetered, self.toggled)
        groups += (self.twin_a, self.twin_b, self.lab, self.lab_lean)
        return [*(p for g in groups for p in (g.api, g.web)), self.bare]

    def web_urls(self) -> list[str]:
        """Every stack's web tier, as the warm-up loads them."""
        tiers = (*self.stacks.values(), self.lab_lean, self.metered, self.unmetered)
        tiers += (self.toggled, self.twin_a, self.twin_b, self.lab)
        return [t.url for t in tiers]


def measure(run: Run) -> None:
    """Every figure, round and note of the run into `run`."""
    sink, sink_url = stack.sink(run.logs)
    lab_collector, lab_otlp = stack.collector("collector", run.logs, run.logs / "traces.db")
    line_up = _line_up(run, sink_url, lab_otlp)
    first = [sink, lab_collector, *line_up.procs()]
    run.procs.extend(first)
    run.placement = _placement(run)
    run.say("starting the tiers (five stacks, the pairs, labs), the sink, the collector ...")
    with running(*first):
        proxy, proxy_port = stack.proxy(run.logs, _port(line_up.bare), run.first)
        run.procs.append(proxy)
        with running(proxy):
            _through_the_stacks(run, line_up, stack.query_url(lab_collector), proxy_port)
        run.notes.extend(_span_drops(line_up.stacks["standard"], line_up.lab))
    _without_the_stacks(run)
    run.notes.append(run.meter.noise())


def _line_up(run: Run, sink_url: str, lab_otlp: str) -> LineUp:
    """Every stack, made (not started) in the order their ports are taken."""
    tier_otel = {"OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_SERVICE_NAME": ""}
    to_sink = {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url}
    # issue 16: the stock anchor and our tiers in each mode, all exporting to the sink
    stacks = {
        "stock": run.tiers("stock", to_sink, modules=("bench.stock.web", "bench.stock.api")),
        "untraced": run.tiers("untraced", {"OTEL_SDK_DISABLED": "true"}),
        "standard": run.tiers("standard", to_sink),
        "lean": run.tiers("lean", {**to_sink, "TRACING_MODE": "lean"}),
        "sampled": run.tiers("sampled", {**to_sink, **SAMPLED_10}),
    }
    # issue 8: two fresh traced stacks, one without GET /metrics and its observations
    # (not the traced stack itself: by then it has served the rounds above, its twin none)
    metered = run.tiers("metered", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
    unmetered = run.tiers(
        "unmetered",
        {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url, "METRICS_ENABLED": "false"},
    )
    # issue 9: one traced stack switching TCP_INFO on and off inside each tier (bench/toggle)
    run.toggles.mkdir(parents=True, exist_ok=True)
    toggled = run.tiers("toggled", {
        **tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
        "PYTHONPATH": str(TOGGLE), "NETGAP_BENCH_TOGGLE_DIR": str(run.toggles),
    })  # fmt: skip
    # the control: two identical traced stacks, measured as the pairs above are, show how
    # far apart this machine puts the same code (on/off ratios inside that are noise)
    twin_a = run.tiers("twin-a", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
    twin_b = run.tiers("twin-b", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url})
    lab = run.tiers("lab", {**tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": lab_otlp})
    lab_lean = run.tiers("lab-lean", {
        **tier_otel, "OTEL_EXPORTER_OTLP_ENDPOINT": lab_otlp, "TRACING_MODE": "lean",
    })  # fmt: skip
    # item 4's API tier: untraced and no query delay, the cheapest upstream there is, so
    # the proxy's share of each exchange is as large as it can be
    bare = stack.tiers(
        "bare", run.logs, query_delay_ms=0, otel={"OTEL_SDK_DISABLED": "true"},
        web_cpus=run.first, api_cpus=run.last,
    ).api  # fmt: skip
    return LineUp(stacks, metered, unmetered, toggled, twin_a, twin_b, lab, lab_lean, bare)


def _placement(run: Run) -> dict[str, str]:
    return {
        "web tiers, fault proxy": _cpus(run.first),
        "API tiers": _cpus(run.last),
        "wrk -> web tier": _cpus({run.wrk_on_last} if run.wrk_on_last is not None else None),
        "wrk -> API tier or proxy": _cpus(
            {run.wrk_on_first} if run.wrk_on_first is not None else None
        ),
        "span sink, lab collector": "any",
    }


def _through_the_stacks(run: Run, line_up: LineUp, query: str, proxy_port: int) -> None:
    """Items 1 to 4 and 6, and the breakdown over HTTP: what needs the stacks running."""
    plan = run.plan
    direct_url, proxied_url = stack.url(_port(line_up.bare)), stack.url(proxy_port)
    run.say("warming up ...")
    for url in line_up.web_urls():
        wrk(url, plan.connections, plan.warm_up_s, run.wrk_on_last)
    for url in (direct_url, proxied_url):
        wrk(url, plan.connections, plan.warm_up_s, run.wrk_on_first)
    tracing.tracing_cost(run, line_up.stacks)
    tracing.on_off_cost(run, "metrics", line_up.metered, line_up.unmetered)
    tracing.tcp_info_in_place(run, line_up.toggled)
    tracing.on_off_cost(run, "control", line_up.twin_a, line_up.twin_b)
    proxycost.proxy_cost(run, direct_url, proxied_url)
    floor_windows = floor.floor_traffic(run, line_up.lab)
    lean_windows = floor.floor_traffic(run, line_up.lab_lean)
    rss.rss_at_load(run, line_up.lab)
    time.sleep(1.5)  # the tiers export every 0.5 s
    floor.floor(run, query, floor_windows, "standard", 0.5)
    floor.floor(run, query, lean_windows, "lean", 0.25)
    breakdown_over_http(run, query, floor_windows)


def _without_the_stacks(run: Run) -> None:
    """Item 5 (the collector on its own store, the breakdown), and the pieces measured in
    this process: the raw-socket proxy, TCP_INFO's cost, lean's pieces."""
    run.say("collector ingest ...")
    ingest(run)
    run.say("breakdown speed ...")
    breakdown_from_store(run, run.logs / "traces.db")
    run.say("breakdown over api_v3 (issue 18) ...")
    traces = min(breakdown_api.TRACES, run.plan.breakdown_traces)
    api = breakdown_api.measure(run.logs, traces=traces, rounds=run.plan.rounds, say=run.say)
    run.add(*api.figures())
    run.rounds["breakdown_api"] = api.to_dict()
    run.say("raw-socket proxy cost ...")
    proxycost.raw_proxy(run)
    tracing.tcp_info_cost(run)
    tracing.lean_pieces(run)


def _port(proc: Child) -> int:
    return int(proc.env["PORT"])


def _cpus(cpus: set[int] | None) -> str:
    return "any" if not cpus else "CPU " + ",".join(str(c) for c in sorted(cpus))


def _span_drops(*groups: stack.Tiers) -> list[str]:
    notes = []
    for group in groups:
        for proc in (group.web, group.api):
            text = proc.log.read_text(errors="replace")
            if "Queue is full" in text or "dropp" in text.lower():
                notes.append(f"{proc.name}: its log mentions dropped spans (see {proc.log})")
    return notes
