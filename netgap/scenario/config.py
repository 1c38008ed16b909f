"""What a scenario run is asked for: the ports, the phases and their faults, the load and the
lab's settings (netgap.commands.scenario builds it from the command line)."""

from dataclasses import dataclass
from pathlib import Path

from netgap.fault.spec import Faults

# The API tier's keep-alive timeout in the lab is 2 x the web tier's API timeout + this (see
# api_keepalive_s), and at most KEEPALIVE_MAX_S (the most KEEPALIVE_TIMEOUT_S takes).
KEEPALIVE_MARGIN_S = 5.0
KEEPALIVE_MAX_S = 3600.0


@dataclass(frozen=True)
class Ports:
    web: int
    api: int
    proxy: int
    control: int
    otlp: int
    query: int

    def flags(self) -> list[tuple[str, int]]:
        """Each port with the flag that sets it, in start order."""
        return [
            ("--otlp-port", self.otlp),
            ("--query-port", self.query),
            ("--api-port", self.api),
            ("--proxy-port", self.proxy),
            ("--control-port", self.control),
            ("--web-port", self.web),
        ]


@dataclass(frozen=True)
class Phase:
    name: str
    duration_s: float
    faults: Faults  # in force from the phase's start to its end


@dataclass(frozen=True)
class ScenarioConfig:
    host: str
    ports: Ports
    phases: tuple[Phase, ...]
    rate: float  # requests a second on the web tier, all phases
    settle_s: float  # left out at either edge of each phase
    api_timeout_s: float  # the web tier's API_TIMEOUT_S
    query_delay_ms: float  # the API tier's simulated query
    seed: int | None  # the proxy's random draws
    out: Path
    pin: bool = True  # the API tier on a core, the web tier and the proxy on another
    kernel: bool = False  # the faults on a routed hop by tc/iptables (netgap.scenario.kernel)

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def url(self, port: int, path: str = "/") -> str:
        return f"http://{self.host}:{port}{path}"


def fault_phase(config: ScenarioConfig) -> Phase | None:
    """The first phase with faults (None: the run has none)."""
    return next((phase for phase in config.phases if phase.faults.active), None)


def fault_faults(config: ScenarioConfig) -> Faults:
    phase = fault_phase(config)
    return Faults() if phase is None else phase.faults


def api_keepalive_s(config: ScenarioConfig) -> float:
    """The API tier's KEEPALIVE_TIMEOUT_S in the lab. uvicorn's idle clock starts when it has
    written an answer; under the fault the answer then waits seconds in the queue (up to the
    web tier's API timeout), and the web tier's next request on the connection as long again
    on the way back. A server that times the connection out meanwhile closes it under an
    answer still on its way, or a request already sent: the client sees the connection closed
    or reset, and sends the call again (at uvicorn's default 5 s, 18-39 calls a run through the
    userspace proxy, none at this setting). So the API keeps idle connections longer than both
    ways can take, and the web tier is told so (API_KEEPALIVE_TIMEOUT_S), while its own idle
    expiry stays at its default, well below."""
    return min(2 * config.api_timeout_s + KEEPALIVE_MARGIN_S, KEEPALIVE_MAX_S)
