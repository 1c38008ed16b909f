"""The incident on one machine: start the lab, run the phases, read the traces back.

  collector  <- spans from both tiers
  load -> web tier -> fault proxy -> API tier

The lab's processes come from netgap.lab; the phases (faults at their edges, a load generator
each) from netgap.scenario.phases; reading back from netgap.scenario.readback. Faults are cleared
again on the way out whatever happened. When the load has drained, the tiers are stopped first
(a graceful stop flushes their last spans), then the traces are read back from the collector,
phase by phase, and the collector is stopped.

With --kernel (netgap.scenario.kernel) the API tier runs in a network namespace behind a routed
hop namespace, and the faults are tc/iptables rules on the hop, applied and reverted at the same
edges (the latency still the proxy's when the kernel has no netem).
"""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import httpx

from netgap import lab
from netgap.errors import NetgapError
from netgap.fault.control import FAULTS_PATH
from netgap.scenario import kernel, model
from netgap.scenario.config import ScenarioConfig, api_keepalive_s, fault_faults, fault_phase
from netgap.scenario.exchange import measure_exchange
from netgap.scenario.phases import clear_faults, run_phases
from netgap.scenario.readback import injector_of, link_of, load_of, read_back
from netgap.scenario.result import ScenarioResult
from netgap.supervisor import check_port_free

WARM_UP_REQUESTS = 5

Say = Callable[[str], None]


def run_scenario(config: ScenarioConfig, say: Say) -> ScenarioResult:
    """Runs every phase and returns the report's data (the JSON written)."""
    if config.kernel:
        kernel.preflight(fault_faults(config), say)
    for flag, port in config.ports.flags():
        check_port_free(config.host, port, flag)
    config.logs.mkdir(parents=True, exist_ok=True)
    with _sigterm_interrupts():
        if not config.kernel:
            return _run(config, None, say)
        with kernel.overlay(config.ports.api, config.logs / "kernel.log", say) as overlay:
            return _run(config, overlay, say)


def _run(config: ScenarioConfig, overlay: kernel.Overlay | None, say: Say) -> ScenarioResult:
    lineup = _lineup(config, overlay)
    control_url = config.url(config.ports.control, FAULTS_PATH) if lineup.proxy else None
    try:
        lineup.start(lineup.collector, lineup.api)
        exchange = measure_exchange(
            _api_url(config, overlay),
            _api_host(config, overlay),
            config.ports.api,
            config.logs / "apitier.log",
        )
        lineup.start(*lineup.client_side)
        cores = lineup.pin() if config.pin else None
        say(f"{lineup.names()} are up (logs in {config.logs}/)")
        _warm_up(config.url(config.ports.web))
        say(
            f"one exchange on the wire: {exchange.request_bytes} B request, "
            f"{exchange.response_bytes} B response"
        )
        _say_prediction(config, exchange, say, injector_of(overlay))
        runs = run_phases(config, control_url, overlay, say)
        if control_url is not None:
            clear_faults(control_url)
        lineup.stop(*lineup.children[1:])  # their graceful stop sends their last spans
        say("reading the traces back ...")
        return read_back(config, runs, exchange, cores, overlay)
    finally:
        if control_url is not None and lineup.proxy is not None and not lineup.proxy.exited():
            clear_faults(control_url)
        codes = lineup.stop()
        failed = {name: code for name, code in codes.items() if code not in (0, None)}
        if failed:
            say(f"warning: exit codes {failed} (see {config.logs}/)")


def _api_host(config: ScenarioConfig, overlay: kernel.Overlay | None) -> str:
    return config.host if overlay is None else kernel.API_ADDRESS


def _api_url(config: ScenarioConfig, overlay: kernel.Overlay | None) -> str:
    """Where the web tier calls the API: the proxy, unless netem does all the faults."""
    if overlay is None or overlay.latency_via_proxy:
        return config.url(config.ports.proxy)
    return f"http://{kernel.API_ADDRESS}:{config.ports.api}/"


def _lineup(config: ScenarioConfig, overlay: kernel.Overlay | None) -> lab.LineUp:
    """Collector, API tier, fault proxy (None: netem does every fault) and web tier. In kernel
    mode the API tier runs in the namespace, and the collector takes spans on the web side's
    address, across the hop."""
    ports, host, logs = config.ports, config.host, lab.Logs(config.logs)
    api_host = _api_host(config, overlay)
    otlp_host = host if overlay is None else kernel.WEB_ADDRESS
    api_env, web_env = _tier_envs(config, overlay, f"http://{otlp_host}:{ports.otlp}")
    api_args = ["apitier"] if overlay is None else overlay.api_child_args("apitier")
    proxy = lab.fault_proxy(
        f"{host}:{ports.proxy}",
        f"{api_host}:{ports.api}",
        f"{host}:{ports.control}",
        logs.files("proxy"),
        seed=config.seed,
    )
    return lab.LineUp(
        collector=lab.collector(
            f"{otlp_host}:{ports.otlp}",
            f"{host}:{ports.query}",
            config.logs / "traces.db",
            logs.files("collector"),
        ),
        api=lab.tier("API tier", api_args, api_host, ports.api, api_env, logs.files("apitier")),
        web=lab.tier("web tier", ["webtier"], host, ports.web, web_env, logs.files("webtier")),
        proxy=None if overlay is not None and not overlay.latency_via_proxy else proxy,
    )


def _tier_envs(
    config: ScenarioConfig, overlay: kernel.Overlay | None, otlp_endpoint: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The API tier's environment and the web tier's (beside HOST and PORT)."""
    tier_env = lab.export_env(otlp_endpoint)
    keepalive = f"{api_keepalive_s(config):g}"
    api_env = {
        **tier_env,
        "QUERY_DELAY_MS": str(config.query_delay_ms),
        "KEEPALIVE_TIMEOUT_S": keepalive,
    }
    web_env = {
        **tier_env,
        "API_URL": _api_url(config, overlay),
        "API_TIMEOUT_S": f"{config.api_timeout_s:g}",
        "API_KEEPALIVE_TIMEOUT_S": keepalive,
        "JAEGER_UI_URL": config.url(config.ports.query, ""),
    }
    return api_env, web_env


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does: through the `finally`s that clear the faults
    and stop the children."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _warm_up(web_url: str) -> None:
    """A few requests through the whole path before the baseline: every process has served
    one and the web tier holds a connection to the proxy."""
    with httpx.Client(timeout=10, trust_env=False) as client:
        for _ in range(WARM_UP_REQUESTS):
            response = client.get(web_url)
            if response.status_code != 200:
                raise NetgapError(
                    f"the web tier answered {response.status_code} before any fault",
                    hint="see the logs of the web tier and the proxy",
                )


def _say_prediction(
    config: ScenarioConfig, exchange: model.Exchange, say: Say, injector: model.Injector
) -> None:
    phase = fault_phase(config)
    if phase is None:
        return
    load = load_of(config, phase, 0.0)
    expectation = model.expect(link_of(phase.faults), exchange, load, injector)
    say(
        f"model: remote calls should take {expectation.total_s:.2f} s on average during the "
        f"fault, mostly {expectation.dominant.name} ({expectation.dominant.seconds:.2f} s)"
    )
