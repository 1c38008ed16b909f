"""A scenario run read back: each phase's breakdown from the collector (its edges minus the
settle margin), the whole run's series for the plot, the web tier's answers by cause, the
model's expectation beside the measured numbers, and the diagnosis: a ScenarioResult, whose
JSON is scenario.json."""

from dataclasses import dataclass, replace
from typing import Any

from netgap.analysis import build_report
from netgap.breakdown import edge_name
from netgap.fault.spec import Faults
from netgap.scenario import answers, kernel, model
from netgap.scenario.config import (
    Phase,
    ScenarioConfig,
    api_keepalive_s,
    fault_faults,
    fault_phase,
)
from netgap.scenario.diagnosis import diagnose
from netgap.scenario.phases import PhaseRun
from netgap.scenario.result import (
    KernelInfo,
    LoadCounts,
    MetricRemote,
    ModelInputs,
    PhaseResult,
    ScenarioResult,
    Series,
    Settings,
    WireExchange,
)
from netgap.svg import nice_step
from netgap.trace_source import JaegerQuery

WEB_SERVICE = "webtier"
API_SERVICE = "apitier"
MIN_BUCKET_S = 0.5
BUCKETS = 60  # about this many bars in the plot


# -- the model's inputs


def link_of(faults: Faults) -> model.Link:
    return model.Link(latency_s=faults.latency_s, rate_bps=faults.rate_bps, loss=faults.loss)


def injector_of(overlay: kernel.Overlay | None) -> model.Injector:
    """What puts the faults on the path: the proxy, or kernel mode's tc (and netem or the
    proxy for the latency)."""
    return model.PROXY if overlay is None else overlay.injector


def load_of(config: ScenarioConfig, phase: Phase, new_share: float) -> model.Load:
    return model.Load(
        requests_per_s=config.rate, fault_s=phase.duration_s, new_connection_share=new_share
    )


# -- reading it back


def component_names() -> dict[str, str]:
    return {
        "web": f"{WEB_SERVICE} self",
        "remote": f"{edge_name(WEB_SERVICE, API_SERVICE)} remote",
        "api": f"{API_SERVICE} self",
        "total": "total",
    }


def bucket_ns(span_ns: int) -> int:
    return round(max(MIN_BUCKET_S, nice_step(span_ns / 1e9, BUCKETS)) * 1e9)


def read_back(
    config: ScenarioConfig,
    runs: list[PhaseRun],
    exchange: model.Exchange,
    cores: dict[str, list[int]] | None,
    overlay: kernel.Overlay | None = None,
) -> ScenarioResult:
    """The report's data: the run's settings, each phase read back from the collector, the
    series, the model's expectation and the diagnosis."""
    injector = injector_of(overlay)
    phases, series = _from_the_collector(config, runs, exchange, injector)
    result = ScenarioResult(
        start_ns=runs[0].start_ns,
        end_ns=runs[-1].end_ns,
        config=_settings(config, cores),
        faults=_fault_json(config),
        faults_text=_faults_text(config),
        component_names=component_names(),
        exchange=WireExchange.of(exchange),
        phases=phases,
        series=series,
        model=_model(config, phases, exchange, injector),
        kernel=None if overlay is None else KernelInfo(**overlay.to_json(fault_faults(config))),
    )
    return replace(result, diagnosis=diagnose(result))


def _settings(config: ScenarioConfig, cores: dict[str, list[int]] | None) -> Settings:
    return Settings(
        host=config.host,
        rate=config.rate,
        settle_s=config.settle_s,
        api_timeout_s=config.api_timeout_s,
        api_keepalive_s=api_keepalive_s(config),
        query_delay_ms=config.query_delay_ms,
        seed=config.seed,
        cores=cores,
        phases={phase.name: phase.duration_s for phase in config.phases},
        kernel=config.kernel,
    )


@dataclass(frozen=True)
class Measured:
    """What was read back for one phase: its statistics' window, the breakdown's summary of
    it, and the web tier's answers by cause (netgap.scenario.answers)."""

    lo: int
    hi: int
    summary: dict[str, Any]
    names: dict[str, str]
    answers: dict[str, int]


def _from_the_collector(
    config: ScenarioConfig,
    runs: list[PhaseRun],
    exchange: model.Exchange,
    injector: model.Injector,
) -> tuple[list[PhaseResult], Series]:
    """Each phase's part (its edges less the settle margin), with the web tier's answers by
    cause beside it, and the whole run's series."""
    start_ns, end_ns = runs[0].start_ns, runs[-1].end_ns
    settle_ns = round(config.settle_s * 1e9)
    names = component_names()
    edge = edge_name(WEB_SERVICE, API_SERVICE)
    query_url = config.url(config.ports.query, "")
    answered = answers.by_phase(config.logs / "webtier.log", [run.load_start_ns for run in runs])
    phases = []
    with JaegerQuery(query_url) as source:
        for run, by_cause in zip(runs, answered, strict=True):
            lo, hi = run.start_ns + settle_ns, run.end_ns - settle_ns
            summary = build_report(source, WEB_SERVICE, lo, hi)["summary"]
            measured = Measured(lo, hi, summary, names, by_cause)
            phases.append(_phase_result(config, run, measured, exchange, edge, injector))
        bucket = bucket_ns(end_ns - start_ns)
        whole = build_report(source, WEB_SERVICE, start_ns, end_ns, bucket)["summary"]
    return phases, Series.of(whole, bucket, names, edge)


def _phase_result(
    config: ScenarioConfig,
    run: PhaseRun,
    measured: Measured,
    exchange: model.Exchange,
    edge: str,
    injector: model.Injector = model.PROXY,
) -> PhaseResult:
    summary = measured.summary
    edges = summary["edges"].get(edge, {})
    new, reused = edges.get("new_connections", 0), edges.get("reused_connections", 0)
    share = new / (new + reused) if new + reused else 0.0
    expected = None
    if run.phase.faults.active:
        load = load_of(config, run.phase, share)
        expected = model.expect(link_of(run.phase.faults), exchange, load, injector)
    return PhaseResult(
        name=run.phase.name,
        start_ns=run.start_ns,
        end_ns=run.end_ns,
        measured_start_ns=measured.lo,
        measured_end_ns=measured.hi,
        faults=run.phase.faults.to_json(),
        faults_active=run.phase.faults.active,
        faults_text=run.phase.faults.describe(),
        load=LoadCounts(**run.load.to_dict()),
        traces=summary["traces"],
        components=summary["components"],
        edges=summary["edges"],
        data_quality=summary["data_quality"],
        new_connection_share=share,
        metric_remote=MetricRemote.of(run.remote),
        expected=expected,
        component_names=measured.names,
        answers=measured.answers,
    )


def _fault_json(config: ScenarioConfig) -> dict[str, Any] | None:
    phase = fault_phase(config)
    return None if phase is None else phase.faults.to_json()


def _faults_text(config: ScenarioConfig) -> str:
    phase = fault_phase(config)
    return "no faults" if phase is None else phase.faults.describe()


def _model(
    config: ScenarioConfig,
    phases: list[PhaseResult],
    exchange: model.Exchange,
    injector: model.Injector = model.PROXY,
) -> ModelInputs | None:
    phase = fault_phase(config)
    measured = next((p for p in phases if p.faults_active), None)
    if phase is None or measured is None:
        return None
    load = load_of(config, phase, measured.new_connection_share)
    return ModelInputs.of(injector, link_of(phase.faults), load, exchange)
