"""What a scenario run found, typed: the phases, the time series, the model's inputs, kernel
mode's set-up. netgap.scenario.run builds it, the report reads it, and `to_json` writes the
report's JSON (`from_json` reads a saved one back, so a report can be drawn again without
running anything).

The breakdown's own numbers (a phase's components, edges and data quality) keep the shape
the breakdown writes (netgap.breakdown, netgap.aggregate), as the JSON always has.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any, Self

from netgap import promtext
from netgap.scenario.model import Exchange, Expectation, Injector, Link, Load, expect

# The three parts of a request's time, as the series keys them and the report names them.
PARTS = (("web", "web self"), ("remote", "remote calls"), ("api", "API self"))
# The two ends of the web tier's connections to the API that testify (netgap.breakdown):
# (end, the edge's key, label, colour).
ENDS = (
    ("web", "tcp", "web tier's end (its CLIENT spans)", "#4c78a8"),
    ("api", "tcp_callee", "API tier's end (its SERVER spans)", "#54a24b"),
)

Json = dict[str, Any]  # a JSON object, as written and read back
Stats = dict[str, float]  # p50, p90, p99, max, mean (ns), as the breakdown sums them up
Components = dict[str, Stats]  # by component name ("webtier self", ...)
Edges = dict[str, Json]  # by edge ("webtier->apitier"): the breakdown's shape
FaultsJson = Json  # netgap.fault.spec.Faults.to_json()


def _fields(cls: type, data: Json) -> Json:
    """`data`'s keys that name fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class LoadCounts:
    """One phase's load as the load generator counted it (LoadResult.to_dict())."""

    url: str
    arrivals: str
    rate_asked: float
    duration_asked_s: float
    elapsed_s: float
    sent: int
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    rate: float
    latency_ms: dict[str, float]
    send_lag_max_ms: float


@dataclass(frozen=True)
class MetricRemote:
    """The web tier's netgap_remote_seconds over a phase, in ns as the trace-based parts
    are: every call that ended in the phase (no settle margin: it counts by when a call
    ended, not began)."""

    calls: int = 0
    p50: float | None = None
    p99: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, remote: promtext.Histogram) -> Self:
        def ns(seconds: float | None) -> float | None:
            return None if seconds is None else seconds * 1e9

        return cls(
            round(remote.count),
            ns(remote.quantile(0.5)),
            ns(remote.quantile(0.99)),
            ns(remote.mean()),
        )


@dataclass(frozen=True)
class PhaseResult:
    """One phase: its window, its faults, its load, and what the traces say of it."""

    name: str
    start_ns: int
    end_ns: int
    measured_start_ns: int  # the statistics' window: the phase less the settle margins
    measured_end_ns: int
    faults: FaultsJson
    faults_active: bool
    faults_text: str
    load: LoadCounts
    traces: int
    components: Components
    edges: Edges
    data_quality: Json
    new_connection_share: float
    metric_remote: MetricRemote
    expected: Expectation | None  # the model's, for a phase with faults
    component_names: dict[str, str]  # part ("web", "remote", "api", "total") -> component
    answers: dict[str, int]  # the web tier's, by cause (netgap.scenario.answers)

    def stat(self, part: str, stat: str) -> float | None:
        """One part's statistic (ns), None when the phase had none."""
        value = self.components.get(self.component_names[part], {}).get(stat)
        return None if value is None else float(value)

    def to_json(self) -> Json:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["load"] = asdict(self.load)
        out["metric_remote"] = asdict(self.metric_remote)
        out["expected"] = None if self.expected is None else self.expected.to_json()
        return out

    @classmethod
    def from_json(cls, data: Json) -> Self:
        expected = data.get("expected")
        return cls(
            **{
                **_fields(cls, data),
                "load": LoadCounts(**data["load"]),
                "metric_remote": MetricRemote(**data["metric_remote"]),
                "expected": None if expected is None else Expectation.from_json(expected),
            }
        )


@dataclass(frozen=True)
class EndTestimony:
    """The kernel's view of the edge at one end in one bucket."""

    calls: int
    srtt_p50: float  # ns
    retransmits_mean: float  # per request


@dataclass(frozen=True)
class Bucket:
    start_ns: int
    traces: int
    p50: dict[str, float]  # by part of PARTS
    tcp: dict[str, EndTestimony]  # by end of ENDS that testified


@dataclass(frozen=True)
class Series:
    """The whole run in buckets of `bucket_ns`: the plots' data."""

    bucket_ns: int
    buckets: list[Bucket]

    @classmethod
    def of(cls, summary: Json, bucket: int, names: dict[str, str], edge: str) -> Self:
        """From the breakdown's summary of the whole run in buckets: each bucket's p50 per
        part and the kernel's view of `edge` at each end that testified ("web": the web
        tier's CLIENT spans, "api": the API tier's SERVER spans)."""
        parts = {part: name for part, name in names.items() if part != "total"}
        return cls(
            bucket,
            [
                Bucket(
                    b["start_ns"],
                    b["traces"],
                    {
                        part: b["components"].get(name, {}).get("p50", 0)
                        for part, name in parts.items()
                    },
                    _testimony(b.get("edges", {}).get(edge, {})),
                )
                for b in summary["buckets"]
            ],
        )

    @classmethod
    def from_json(cls, data: Json) -> Self:
        buckets = [
            Bucket(**{**b, "tcp": {end: EndTestimony(**t) for end, t in b["tcp"].items()}})
            for b in data["buckets"]
        ]
        return cls(data["bucket_ns"], buckets)


def _testimony(edge: Json) -> dict[str, EndTestimony]:
    return {
        end: EndTestimony(
            edge[key]["calls"], edge[key]["srtt"]["p50"], edge[key]["retransmits"]["mean"]
        )
        for end, key, *_ in ENDS
        if edge.get(key)
    }


@dataclass(frozen=True)
class Settings:
    """How the scenario ran (the JSON's "config")."""

    host: str
    rate: float  # requests a second on the web tier
    settle_s: float
    api_timeout_s: float
    api_keepalive_s: float
    query_delay_ms: float
    seed: int | None
    cores: dict[str, list[int]] | None  # the cores each child was pinned to
    phases: dict[str, float]  # each phase's duration (s)
    kernel: bool


@dataclass(frozen=True)
class WireExchange:
    """One exchange on the wire, measured, and how."""

    request_bytes: int
    response_bytes: int
    source: str = "one exchange with the API tier, the request as the web tier sends it"

    @classmethod
    def of(cls, exchange: Exchange) -> Self:
        return cls(exchange.request_bytes, exchange.response_bytes)


@dataclass(frozen=True)
class ModelLoad:
    requests_per_s: float
    fault_s: float
    new_connection_share: float
    shared_cap: bool


@dataclass(frozen=True)
class ModelInputs:
    """The model (netgap.scenario.model) of the fault phase: its inputs and what it expects."""

    injector: str
    link: Link
    load: ModelLoad
    exchange: Exchange
    expectation: Expectation

    @classmethod
    def of(cls, injector: Injector, link: Link, load: Load, exchange: Exchange) -> Self:
        """The model's expectation for these inputs."""
        shape = ModelLoad(
            load.requests_per_s, load.fault_s, load.new_connection_share, load.shared_cap
        )
        return cls(injector.name, link, shape, exchange, expect(link, exchange, load, injector))

    def to_json(self) -> Json:
        return {**asdict(self), "expectation": self.expectation.to_json()}

    @classmethod
    def from_json(cls, data: Json) -> Self:
        return cls(
            data["injector"],
            Link(**data["link"]),
            ModelLoad(**data["load"]),
            Exchange(**data["exchange"]),
            Expectation.from_json(data["expectation"]),
        )


@dataclass(frozen=True)
class KernelInfo:
    """Kernel mode's set-up (netgap.scenario.kernel.Overlay.to_json())."""

    namespace: str
    hop_namespace: str  # the routed hop between the tiers, where the faults are
    web_device: str
    api_device: str
    hop_devices: list[str]  # the hop's ends: towards the web side, towards the API
    web_address: str
    api_address: str
    api_port: int
    netem: bool
    netem_probe: str
    latency_via: str  # "netem", or "userspace proxy" where the kernel has no netem
    kernel_faults: str
    proxy_faults: str
    notes: list[str]
    plan: dict[str, dict[str, list[str]]]  # side -> "apply"/"revert" -> commands
    commands: list[str]


@dataclass(frozen=True)
class ScenarioResult:
    """The whole run, as the report draws it and its JSON holds it."""

    start_ns: int
    end_ns: int
    config: Settings
    faults: FaultsJson | None  # the fault phase's
    faults_text: str
    component_names: dict[str, str]
    exchange: WireExchange
    phases: list[PhaseResult]
    series: Series
    model: ModelInputs | None
    kernel: KernelInfo | None
    diagnosis: str = ""  # netgap.scenario.diagnosis.diagnose's words
    netgap_scenario: int = 1  # the JSON's version

    def phase(self, name: str) -> PhaseResult | None:
        return next((phase for phase in self.phases if phase.name == name), None)

    def answers_by_phase(self) -> dict[str, dict[str, int]]:
        """The web tier's answers by cause, per phase."""
        return {phase.name: phase.answers for phase in self.phases}

    def to_json(self) -> Json:
        """The report's JSON, keys in their order since the first version."""
        return {
            "netgap_scenario": self.netgap_scenario,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "config": asdict(self.config),
            "faults": self.faults,
            "faults_text": self.faults_text,
            "component_names": self.component_names,
            "exchange": asdict(self.exchange),
            "phases": [phase.to_json() for phase in self.phases],
            "series": asdict(self.series),
            "model": None if self.model is None else self.model.to_json(),
            "kernel": None if self.kernel is None else asdict(self.kernel),
            "diagnosis": self.diagnosis,
        }

    @classmethod
    def from_json(cls, data: Json) -> Self:
        model, kernel = data.get("model"), data.get("kernel")
        return cls(
            **{
                **_fields(cls, data),
                "config": Settings(**data["config"]),
                "exchange": WireExchange(**data["exchange"]),
                "phases": [PhaseResult.from_json(phase) for phase in data["phases"]],
                "series": Series.from_json(data["series"]),
                "model": None if model is None else ModelInputs.from_json(model),
                "kernel": None if kernel is None else KernelInfo(**kernel),
            }
        )
