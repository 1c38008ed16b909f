"""A scenario run read back: each phase's breakdown from the collector (its edges minus the
settle margin), the whole run's series for the plot, the web tier's answers by cause, the
model's expectation beside the measured numbers, and the diagnosis; the report's data, as
written to scenario.json."""

from typing import Any

from netgap import promtext
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
from netgap.scenario.phases import PhaseRun
from netgap.scenario.report import ENDS, diagnose, nice_step
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
) -> dict[str, Any]:
    """The report's data (the JSON written): the run's settings, each phase read back from
    the collector, the series, the model's expectation and the diagnosis."""
    start_ns, end_ns = runs[0].start_ns, runs[-1].end_ns
    injector = injector_of(overlay)
    names = component_names()
    phases, series = _from_the_collector(config, runs, exchange, injector)
    result: dict[str, Any] = {
        "netgap_scenario": 1,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "config": {
            "host": config.host,
            "rate": config.rate,
            "settle_s": config.settle_s,
            "api_timeout_s": config.api_timeout_s,
            "api_keepalive_s": api_keepalive_s(config),
            "query_delay_ms": config.query_delay_ms,
            "seed": config.seed,
            "cores": cores,
            "phases": {phase.name: phase.duration_s for phase in config.phases},
            "kernel": config.kernel,
        },
        "faults": _fault_json(config),
        "faults_text": _faults_text(config),
        "component_names": names,
        "exchange": {
            "request_bytes": exchange.request_bytes,
            "response_bytes": exchange.response_bytes,
            "source": "one exchange with the API tier, the request as the web tier sends it",
        },
        "phases": phases,
        "series": series,
        "model": _model_json(config, phases, exchange, injector),
        "kernel": None if overlay is None else overlay.to_json(fault_faults(config)),
    }
    result["diagnosis"] = diagnose(result)
    return result


def _from_the_collector(
    config: ScenarioConfig,
    runs: list[PhaseRun],
    exchange: model.Exchange,
    injector: model.Injector,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each phase's part (its edges less the settle margin), with the web tier's answers by
    cause beside it, and the whole run's series."""
    start_ns, end_ns = runs[0].start_ns, runs[-1].end_ns
    settle_ns = round(config.settle_s * 1e9)
    names = component_names()
    edge = edge_name(WEB_SERVICE, API_SERVICE)
    query_url = config.url(config.ports.query, "")
    phases = []
    with JaegerQuery(query_url) as source:
        for run in runs:
            lo, hi = run.start_ns + settle_ns, run.end_ns - settle_ns
            summary = build_report(source, WEB_SERVICE, lo, hi)["summary"]
            phases.append(_phase_result(config, run, lo, hi, summary, exchange, edge, injector))
        bucket = bucket_ns(end_ns - start_ns)
        whole = build_report(source, WEB_SERVICE, start_ns, end_ns, bucket)["summary"]
    answered = answers.by_phase(config.logs / "webtier.log", [run.load_start_ns for run in runs])
    for phase, by_cause in zip(phases, answered, strict=True):
        phase["component_names"] = names
        phase["answers"] = by_cause  # the web tier's, by cause (netgap.scenario.answers)
    return phases, _series(whole, bucket, names, edge)


def _phase_result(
    config: ScenarioConfig,
    run: PhaseRun,
    lo: int,
    hi: int,
    summary: dict[str, Any],
    exchange: model.Exchange,
    edge: str,
    injector: model.Injector = model.PROXY,
) -> dict[str, Any]:
    edges = summary["edges"].get(edge, {})
    new, reused = edges.get("new_connections", 0), edges.get("reused_connections", 0)
    share = new / (new + reused) if new + reused else 0.0
    phase: dict[str, Any] = {
        "name": run.phase.name,
        "start_ns": run.start_ns,
        "end_ns": run.end_ns,
        "measured_start_ns": lo,
        "measured_end_ns": hi,
        "faults": run.phase.faults.to_json(),
        "faults_active": run.phase.faults.active,
        "faults_text": run.phase.faults.describe(),
        "load": run.load.to_dict(),
        "traces": summary["traces"],
        "components": summary["components"],
        "edges": summary["edges"],
        "data_quality": summary["data_quality"],
        "new_connection_share": share,
        "metric_remote": _metric_remote(run.remote),
        "expected": None,
    }
    if run.phase.faults.active:
        load = load_of(config, run.phase, share)
        expectation = model.expect(link_of(run.phase.faults), exchange, load, injector)
        phase["expected"] = expectation.to_json()
    return phase


def _metric_remote(remote: promtext.Histogram) -> dict[str, Any]:
    """The phase's netgap_remote_seconds in ns, as the trace-based parts are: every call that
    ended in the phase (no settle margin: it counts by when a call ended, not began)."""
    stats = {"p50": remote.quantile(0.5), "p99": remote.quantile(0.99), "mean": remote.mean()}
    return {
        "calls": round(remote.count),
        **{name: None if value is None else value * 1e9 for name, value in stats.items()},
    }


def _series(
    summary: dict[str, Any], bucket: int, names: dict[str, str], edge: str
) -> dict[str, Any]:
    parts = {part: name for part, name in names.items() if part != "total"}
    return {
        "bucket_ns": bucket,
        "buckets": [
            {
                "start_ns": b["start_ns"],
                "traces": b["traces"],
                "p50": {
                    part: b["components"].get(name, {}).get("p50", 0)
                    for part, name in parts.items()
                },
                "tcp": _bucket_testimony(b.get("edges", {}).get(edge, {})),
            }
            for b in summary["buckets"]
        ],
    }


def _bucket_testimony(edge: dict[str, Any]) -> dict[str, Any]:
    """The kernel's view of the edge in one bucket, per end that testified ("web": the web
    tier's CLIENT spans, "api": the API tier's SERVER spans): srtt p50 (ns) and
    retransmissions per request."""
    out = {}
    for end, key, *_ in ENDS:
        tcp = edge.get(key)
        if tcp:
            out[end] = {
                "calls": tcp["calls"],
                "srtt_p50": tcp["srtt"]["p50"],
                "retransmits_mean": tcp["retransmits"]["mean"],
            }
    return out


def _fault_json(config: ScenarioConfig) -> dict[str, Any] | None:
    phase = fault_phase(config)
    return None if phase is None else phase.faults.to_json()


def _faults_text(config: ScenarioConfig) -> str:
    phase = fault_phase(config)
    return "no faults" if phase is None else phase.faults.describe()


def _model_json(
    config: ScenarioConfig,
    phases: list[dict[str, Any]],
    exchange: model.Exchange,
    injector: model.Injector = model.PROXY,
) -> dict[str, Any] | None:
    phase = fault_phase(config)
    measured = next((p for p in phases if p["faults_active"]), None)
    if phase is None or measured is None:
        return None
    link = link_of(phase.faults)
    load = load_of(config, phase, measured["new_connection_share"])
    return {
        "injector": injector.name,
        "link": {"latency_s": link.latency_s, "rate_bps": link.rate_bps, "loss": link.loss},
        "load": {
            "requests_per_s": load.requests_per_s,
            "fault_s": load.fault_s,
            "new_connection_share": load.new_connection_share,
            "shared_cap": load.shared_cap,
        },
        "exchange": {
            "request_bytes": exchange.request_bytes,
            "response_bytes": exchange.response_bytes,
        },
        "expectation": model.expect(link, exchange, load, injector).to_json(),
    }
