"""A scenario run's result made up in code, like the article preset's (30 s healthy, 60 s of
the fault, 30 s after): the fixed input of the report, page and browser tests."""

from typing import Any

from netgap.scenario import diagnosis, model
from netgap.scenario.result import ScenarioResult

MS = 1_000_000
S = 1_000_000_000
START = 1_764_000_000 * S
NAMES = {
    "web": "webtier self",
    "remote": "webtier->apitier remote",
    "api": "apitier self",
    "total": "total",
}
ARTICLE_TEXT = "latency 500ms, rate 50kbit, loss 1% (both)"


def components(web: float, remote: float, api: float, p99: float = 2.0) -> dict[str, Any]:
    def stats(p50: float) -> dict[str, float]:
        return {"p50": p50, "p90": p50 * 1.5, "p99": p50 * p99, "max": p50 * 3, "mean": p50}

    return {
        "total": stats(web + remote + api),
        NAMES["web"]: stats(web),
        NAMES["remote"]: stats(remote),
        NAMES["api"]: stats(api),
    }


def phase(
    name: str, start_s: int, end_s: int, parts: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    faulted = name == "fault"
    return {
        "name": name,
        "start_ns": START + start_s * S,
        "end_ns": START + end_s * S,
        "faults_active": faulted,
        "faults_text": ARTICLE_TEXT if faulted else "no faults",
        "measured_start_ns": START + (start_s + 1) * S,
        "measured_end_ns": START + (end_s - 1) * S,
        "faults": {"latency": "500ms"} if faulted else {},
        "load": load(
            sent=30 * (end_s - start_s),
            errors=3 if faulted else 0,
            errors_by_kind={"5xx": 3} if faulted else {},
        ),
        "traces": 30 * (end_s - start_s - 2),
        "components": parts,
        "edges": {},
        "data_quality": {},
        "new_connection_share": 0.1 if faulted else 0.0,
        "metric_remote": {"calls": 0, "p50": None, "p99": None, "mean": None},
        "expected": None,
        "component_names": NAMES,
        "answers": {},
        **extra,
    }


def load(sent: int, errors: int, errors_by_kind: dict[str, int]) -> dict[str, Any]:
    """A phase's load as the load generator writes it (LoadResult.to_dict())."""
    return {
        "url": "http://127.0.0.1:8080/",
        "arrivals": "uniform",
        "rate_asked": 30.0,
        "duration_asked_s": sent / 30,
        "elapsed_s": sent / 30,
        "sent": sent,
        "ok": sent - errors,
        "errors": errors,
        "errors_by_kind": errors_by_kind,
        "rate": 30.0,
        "latency_ms": {},
        "send_lag_max_ms": 0.0,
    }


KERNEL = {
    "namespace": "netgap-1",
    "hop_namespace": "netgap-hop-1",
    "web_device": "ng-web",
    "api_device": "ng-api",
    "hop_devices": ["ng-hop-w", "ng-hop-a"],
    "web_address": "10.77.0.1",
    "api_address": "10.77.0.2",
    "api_port": 8081,
    "netem": False,
    "netem_probe": "tc qdisc add ... netem: not supported",
    "latency_via": "userspace proxy",
    "kernel_faults": "rate 50kbit, loss 1%",
    "proxy_faults": "latency 500ms",
    "notes": ["no netem here"],
    "plan": {"web->api": {"apply": ["tc a"], "revert": ["tc b"]}},
    "commands": ["tc a", "tc b"],
}


def sample() -> ScenarioResult:
    """A run like the article preset's: 30 s baseline, 60 s fault, 30 s recovery."""
    return ScenarioResult.from_json(sample_json())


def sample_json() -> dict[str, Any]:
    """sample() as its JSON, diagnosis included."""
    data = sample_json_without_diagnosis()
    data["diagnosis"] = diagnosis.diagnose(ScenarioResult.from_json(data))
    return data


def sample_json_without_diagnosis() -> dict[str, Any]:
    exchange = model.Exchange(request_bytes=213, response_bytes=244)
    link = model.Link(latency_s=0.5, rate_bps=50_000, loss=0.01)
    load = model.Load(requests_per_s=30, fault_s=60, new_connection_share=0.1)
    expectation = model.expect(link, exchange, load).to_json()
    phases = [
        phase("baseline", 0, 30, components(2.2 * MS, 1.3 * MS, 3.1 * MS)),
        phase(
            "fault",
            30,
            90,
            components(2.3 * MS, 6.1 * S, 3.0 * MS),
            expected=expectation,
            metric_remote={"calls": 1797, "p50": 6.2 * S, "p99": 12.5 * S, "mean": 6.3 * S},
        ),
        phase("recovery", 90, 120, components(2.1 * MS, 1.4 * MS, 3.2 * MS)),
    ]
    buckets = []
    for i in range(60):
        t = i * 2
        remote = (1.0 + 0.17 * (t - 30)) * S if 30 <= t < 90 else 1.3 * MS
        buckets.append(
            {
                "start_ns": START + t * S,
                "traces": 60,
                "p50": {"web": 2.2 * MS, "remote": remote, "api": 3.1 * MS},
                "tcp": {},
            }
        )
    result: dict[str, Any] = {
        "netgap_scenario": 1,
        "start_ns": START,
        "end_ns": START + 120 * S,
        "config": {
            "host": "127.0.0.1",
            "rate": 30.0,
            "settle_s": 1.0,
            "api_timeout_s": 30.0,
            "api_keepalive_s": 65.0,
            "query_delay_ms": 2.0,
            "seed": None,
            "cores": None,
            "phases": {"baseline": 30.0, "fault": 60.0, "recovery": 30.0},
            "kernel": False,
        },
        "faults": {"latency": "500ms"},
        "faults_text": ARTICLE_TEXT,
        "component_names": NAMES,
        "exchange": {"request_bytes": 213, "response_bytes": 244, "source": "one exchange"},
        "phases": phases,
        "series": {"bucket_ns": 2 * S, "buckets": buckets},
        "model": {
            "injector": model.PROXY.name,
            "link": {"latency_s": 0.5, "rate_bps": 50_000, "loss": 0.01},
            "load": {
                "requests_per_s": 30,
                "fault_s": 60,
                "new_connection_share": 0.1,
                "shared_cap": False,
            },
            "exchange": {"request_bytes": 213, "response_bytes": 244},
            "expectation": expectation,
        },
        "kernel": None,
    }
    return result
