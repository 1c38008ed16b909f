"""The incident on one machine: start the lab, run the phases, read the traces back.

  collector  <- spans from both tiers
  load -> web tier -> fault proxy -> API tier

The load runs open loop through every phase, one generator per phase so that each request is
counted in the phase it started in (a request issued during the fault that ends after it is a
fault request). Faults are set and cleared through the proxy's control API at the phase edges,
and cleared again on the way out whatever happened. When the load has drained, the tiers are
stopped first (a graceful stop flushes their last spans), then the traces are read back from
the collector, phase by phase, and the collector is stopped.

With --kernel (netgap.scenario.kernel) the API tier runs in a network namespace behind a veth
pair, and the faults are tc/iptables rules on the veth, applied and reverted at the same
edges (the latency still the proxy's when the kernel has no netem).
"""

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from netgap import aio, promtext
from netgap.breakdown import edge_name
from netgap.commands.breakdown import build_report
from netgap.errors import NetgapError
from netgap.fault.control import FAULTS_PATH
from netgap.fault.spec import Faults
from netgap.loadgen import LoadConfig, LoadGenerator, LoadResult
from netgap.scenario import answers, kernel, model
from netgap.scenario.diagnosis import diagnose
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
from netgap.supervisor import Child, check_port_free, pin_apart
from netgap.svg import nice_step
from netgap.trace_source import JaegerQuery

WEB_SERVICE = "webtier"
API_SERVICE = "apitier"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CONTROL_TIMEOUT_S = 5.0
WARM_UP_REQUESTS = 5
# The load waits this much longer than the web tier waits for the API, so that a slow
# request ends as the web tier's answer (a 504 at worst), never as the load's own timeout.
LOAD_TIMEOUT_MARGIN_S = 10.0
MIN_BUCKET_S = 0.5
# The API tier's keep-alive timeout in the lab is 2 x the web tier's API timeout + this (see
# api_keepalive_s), and at most KEEPALIVE_MAX_S (the most KEEPALIVE_TIMEOUT_S takes).
KEEPALIVE_MARGIN_S = 5.0
KEEPALIVE_MAX_S = 3600.0
BUCKETS = 60  # about this many bars in the plot

Say = Callable[[str], None]


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
    kernel: bool = False  # the faults on a veth hop by tc/iptables (netgap.scenario.kernel)

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def url(self, port: int, path: str = "/") -> str:
        return f"http://{self.host}:{port}{path}"


@dataclass(frozen=True)
class PhaseRun:
    phase: Phase
    start_ns: int
    end_ns: int
    load: LoadResult
    # The web tier's netgap_remote_seconds over the phase: the calls that ended in it
    remote: promtext.Histogram = field(default_factory=promtext.Histogram)
    # When its load started, on the wall clock: a moment after start_ns (the faults are set
    # and the metrics scraped first)
    load_start_ns: int = 0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while the scenario ran; everything has been stopped."""


# -- the whole run


def run_scenario(config: ScenarioConfig, say: Say) -> ScenarioResult:
    """Runs every phase and returns the report's data (the JSON written)."""
    if config.kernel:
        kernel.preflight(_fault_faults(config), say)
    for flag, port in config.ports.flags():
        check_port_free(config.host, port, flag)
    config.logs.mkdir(parents=True, exist_ok=True)
    with _sigterm_interrupts():
        if not config.kernel:
            return _run(config, None, say)
        with kernel.overlay(config.ports.api, config.logs / "kernel.log", say) as lab:
            return _run(config, lab, say)


def _run(config: ScenarioConfig, lab: kernel.Overlay | None, say: Say) -> ScenarioResult:
    collector, api, proxy, web = _children(config, lab)
    children = [child for child in (collector, api, proxy, web) if child is not None]
    client_side = [child for child in (proxy, web) if child is not None]
    control_url = config.url(config.ports.control, FAULTS_PATH) if proxy is not None else None
    try:
        for child in (collector, api):
            _start(child)
        exchange = measure_exchange(config, lab)
        for child in client_side:
            _start(child)
        cores = pin_apart(api, client_side) if config.pin else None
        names = [child.name for child in children]
        say(f"{', '.join(names[:-1])} and {names[-1]} are up (logs in {config.logs}/)")
        _warm_up(config.url(config.ports.web))
        say(
            f"one exchange on the wire: {exchange.request_bytes} B request, "
            f"{exchange.response_bytes} B response"
        )
        _say_prediction(config, exchange, say, _injector(lab))
        runs = _run_phases(config, control_url, lab, say)
        if control_url is not None:
            _clear_faults(control_url)
        for child in reversed(children[1:]):  # their graceful stop sends their last spans
            _stop(child)
        say("reading the traces back ...")
        return _result(config, runs, exchange, cores, lab)
    finally:
        if control_url is not None and proxy is not None and not proxy.exited():
            _clear_faults(control_url)
        codes = {child.name: _stop(child) for child in reversed(children)}
        failed = {name: code for name, code in codes.items() if code not in (0, None)}
        if failed:
            say(f"warning: exit codes {failed} (see {config.logs}/)")


def _api_host(config: ScenarioConfig, lab: kernel.Overlay | None) -> str:
    return config.host if lab is None else kernel.API_ADDRESS


def _api_url(config: ScenarioConfig, lab: kernel.Overlay | None) -> str:
    """Where the web tier calls the API: the proxy, unless netem does all the faults."""
    if lab is None or lab.latency_via_proxy:
        return config.url(config.ports.proxy)
    return f"http://{kernel.API_ADDRESS}:{config.ports.api}/"


def _injector(lab: kernel.Overlay | None) -> model.Injector:
    return model.PROXY if lab is None else lab.injector


def _children(
    config: ScenarioConfig, lab: kernel.Overlay | None
) -> tuple[Child, Child, Child | None, Child]:
    """Collector, API tier, fault proxy (None: netem does every fault) and web tier. In kernel
    mode the API tier runs in the namespace, and the collector takes spans on the veth."""
    ports, host, logs = config.ports, config.host, config.logs
    api_host = _api_host(config, lab)
    otlp_host = host if lab is None else kernel.WEB_ADDRESS
    tier_env = {
        "HOST": host,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_host}:{ports.otlp}",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }
    query_url = config.url(ports.query, "")
    collector = Child(
        "collector",
        [
            "netgap",
            "collect",
            "--otlp-http",
            f"{otlp_host}:{ports.otlp}",
            "--otlp-grpc",
            "off",
            "--query",
            f"{host}:{ports.query}",
            "--db",
            str(logs / "traces.db"),
        ],
        {},
        f"{query_url}/api/v3/services",
        logs / "collector.out",
        logs / "collector.log",
    )
    api = Child(
        "API tier",
        ["apitier"] if lab is None else lab.api_child_args("apitier"),
        {
            **tier_env,
            "HOST": api_host,
            "PORT": str(ports.api),
            "QUERY_DELAY_MS": str(config.query_delay_ms),
            "KEEPALIVE_TIMEOUT_S": f"{api_keepalive_s(config):g}",
        },
        f"http://{api_host}:{ports.api}/healthz",
        logs / "apitier.out",
        logs / "apitier.log",
    )
    seed = ["--seed", str(config.seed)] if config.seed is not None else []
    proxy: Child | None = Child(
        "fault proxy",
        [
            "netgap",
            "fault",
            "proxy",
            "--listen",
            f"{host}:{ports.proxy}",
            "--upstream",
            f"{api_host}:{ports.api}",
            "--control",
            f"{host}:{ports.control}",
            *seed,
        ],
        {},
        config.url(ports.control, FAULTS_PATH),
        logs / "proxy.out",
        logs / "proxy.log",
    )
    if lab is not None and not lab.latency_via_proxy:
        proxy = None
    web = Child(
        "web tier",
        ["webtier"],
        {
            **tier_env,
            "PORT": str(ports.web),
            "API_URL": _api_url(config, lab),
            "API_TIMEOUT_S": f"{config.api_timeout_s:g}",
            "API_KEEPALIVE_TIMEOUT_S": f"{api_keepalive_s(config):g}",
            "JAEGER_UI_URL": query_url,
        },
        config.url(ports.web, "/healthz"),
        logs / "webtier.out",
        logs / "webtier.log",
    )
    return collector, api, proxy, web


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


def _start(child: Child) -> None:
    child.start()
    child.wait_healthy(START_TIMEOUT_S)


def _stop(child: Child) -> int | None:
    return child.stop(STOP_TIMEOUT_S)


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


# -- one exchange, measured


def measure_exchange(config: ScenarioConfig, lab: kernel.Overlay | None = None) -> model.Exchange:
    """The bytes of one exchange as the web tier makes it: its request rebuilt from httpx's
    default headers and a traceparent (what the web tier's client sends: httpx's headers,
    which httpx-aiohttp hands to aiohttp), and the API tier's real answer to it, read off the
    socket."""
    request = web_tier_request(_api_url(config, lab))
    address = (_api_host(config, lab), config.ports.api)
    try:
        with socket.create_connection(address, timeout=CONTROL_TIMEOUT_S) as sock:
            sock.sendall(request)
            response = read_http_response(sock)
    except OSError as exc:
        raise NetgapError(
            f"one exchange with the API tier at {address[0]}:{address[1]} failed "
            f"({exc.strerror or type(exc).__name__})",
            hint=f"see {config.logs / 'apitier.log'}",
        ) from None
    return model.Exchange(request_bytes=len(request), response_bytes=len(response))


def web_tier_request(url: str) -> bytes:
    # Not sampled (flags 00): the API answers the same bytes, and no stray trace is stored.
    traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
    with httpx.Client(trust_env=False) as client:
        request = client.build_request("GET", url, headers={"traceparent": traceparent})
    lines = [f"GET {request.url.raw_path.decode('ascii')} HTTP/1.1".encode()]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_http_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise NetgapError("the API tier closed the connection before answering")
        data += chunk
    head, _, _ = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    total = len(head) + 4 + length
    while len(data) < total:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[:total]


# -- the phases


def _run_phases(
    config: ScenarioConfig, control_url: str | None, lab: kernel.Overlay | None, say: Say
) -> list[PhaseRun]:
    # The event loop takes SIGTERM over while it runs and leaves it at the default after.
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        runs = aio.run(_drive(config, control_url, lab, say))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    if runs is None:
        raise Interrupted
    return runs


async def _drive(
    config: ScenarioConfig, control_url: str | None, lab: kernel.Overlay | None, say: Say
) -> list[PhaseRun] | None:
    """Each phase's faults, then its load, on schedule; None if a signal stopped it."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is None:
        raise RuntimeError("run inside a task")
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    generators: list[LoadGenerator] = []
    tasks: list[asyncio.Task[LoadResult]] = []
    metrics_url = config.url(config.ports.web, "/metrics")
    try:
        async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT_S, trust_env=False) as control:
            starts: list[int] = []
            load_starts: list[int] = []
            scrapes: list[promtext.Histogram] = []
            # A phase runs from when it is due to when the next one is, on the wall clock as
            # the schedule says, not as read once its faults were set and the metrics scraped:
            # those take a moment (longer on a busy machine), and reading the clock after them
            # moved the phase's edges off its load's schedule. The last phase's window came
            # out that much short of its requests; the settle margin covers the moment now.
            origin, origin_ns = loop.time(), time.time_ns()
            offset_s = 0.0
            for phase in config.phases:
                await asyncio.sleep(max(0.0, origin + offset_s - loop.time()))
                starts.append(origin_ns + round(offset_s * 1e9))
                await _set_faults(control, control_url, lab, phase.faults)
                scrapes.append(await _remote(control, metrics_url))
                say(f"{phase.name}: {phase.duration_s:g} s, {phase.faults.describe()}")
                generator = LoadGenerator(_load_config(config, phase.duration_s))
                generators.append(generator)
                load_starts.append(time.time_ns())
                tasks.append(asyncio.create_task(generator.run()))
                offset_s += phase.duration_s
            await asyncio.sleep(max(0.0, origin + offset_s - loop.time()))
            starts.append(origin_ns + round(offset_s * 1e9))
            await _set_faults(control, control_url, lab, Faults())
            say("waiting for the requests still in flight ...")
            results = await asyncio.gather(*tasks)
            scrapes.append(await _remote(control, metrics_url))
    except asyncio.CancelledError:
        for generator in generators:
            generator.stop()
            generator.stop()  # the second stop abandons what is in flight
        await asyncio.gather(*tasks, return_exceptions=True)
        if interrupted:
            return None
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return [
        PhaseRun(
            phase,
            starts[i],
            starts[i + 1],
            result,
            scrapes[i + 1].since(scrapes[i]),
            load_starts[i],
        )
        for i, (phase, result) in enumerate(zip(config.phases, results, strict=True))
    ]


async def _remote(client: httpx.AsyncClient, url: str) -> promtext.Histogram:
    return promtext.histogram(await promtext.scrape(client, url), promtext.REMOTE)


def _load_config(config: ScenarioConfig, duration_s: float) -> LoadConfig:
    timeout_s = config.api_timeout_s + LOAD_TIMEOUT_MARGIN_S
    return LoadConfig(
        url=config.url(config.ports.web),
        rate=config.rate,
        duration_s=duration_s,
        timeout_s=timeout_s,
        # Never drop: every request due over a whole timeout may still be outstanding.
        max_inflight=max(256, int(config.rate * timeout_s) + 1),
    )


async def _set_faults(
    control: httpx.AsyncClient, url: str | None, lab: kernel.Overlay | None, faults: Faults
) -> None:
    """The phase's faults in force: all through the proxy, or in kernel mode the kernel's part
    by tc (off the event loop: the commands take a while) and the latency through the proxy
    when there is no netem."""
    proxy_faults = faults
    if lab is not None:
        await asyncio.to_thread(lab.set_faults, faults)
        proxy_faults = lab.split(faults).proxy
    if url is not None:
        await _apply_faults(control, url, proxy_faults)


async def _apply_faults(control: httpx.AsyncClient, url: str, faults: Faults) -> None:
    if faults.active:
        response = await control.put(url, json=faults.to_json())
    else:
        response = await control.delete(url)
    if response.status_code != 200:
        raise NetgapError(f"the fault proxy refused {faults.describe()}: {response.text[:200]}")
    now = Faults.from_json(response.json())
    if now != faults:
        raise NetgapError(f"the fault proxy has {now.describe()}, not {faults.describe()}")


def _clear_faults(url: str) -> None:
    """Best effort, on the way out: the proxy may be gone already."""
    with suppress(httpx.HTTPError):
        httpx.delete(url, timeout=CONTROL_TIMEOUT_S, trust_env=False)


# -- the model


def _fault_phase(config: ScenarioConfig) -> Phase | None:
    return next((phase for phase in config.phases if phase.faults.active), None)


def link_of(faults: Faults) -> model.Link:
    return model.Link(latency_s=faults.latency_s, rate_bps=faults.rate_bps, loss=faults.loss)


def load_of(config: ScenarioConfig, phase: Phase, new_share: float) -> model.Load:
    return model.Load(
        requests_per_s=config.rate, fault_s=phase.duration_s, new_connection_share=new_share
    )


def _say_prediction(
    config: ScenarioConfig, exchange: model.Exchange, say: Say, injector: model.Injector
) -> None:
    phase = _fault_phase(config)
    if phase is None:
        return
    load = load_of(config, phase, 0.0)
    expectation = model.expect(link_of(phase.faults), exchange, load, injector)
    say(
        f"model: remote calls should take {expectation.total_s:.2f} s on average during the "
        f"fault, mostly {expectation.dominant.name} ({expectation.dominant.seconds:.2f} s)"
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


def _result(
    config: ScenarioConfig,
    runs: list[PhaseRun],
    exchange: model.Exchange,
    cores: dict[str, list[int]] | None,
    lab: kernel.Overlay | None = None,
) -> ScenarioResult:
    start_ns, end_ns = runs[0].start_ns, runs[-1].end_ns
    injector = _injector(lab)
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
    result = ScenarioResult(
        start_ns=start_ns,
        end_ns=end_ns,
        config=Settings(
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
        ),
        faults=_fault_json(config),
        faults_text=_faults_text(config),
        component_names=names,
        exchange=WireExchange.of(exchange),
        phases=phases,
        series=Series.of(whole, bucket, names, edge),
        model=_model(config, phases, exchange, injector),
        kernel=None if lab is None else KernelInfo(**lab.to_json(_fault_faults(config))),
    )
    return replace(result, diagnosis=diagnose(result))


@dataclass(frozen=True)
class Measured:
    """What was read back for one phase: its statistics' window, the breakdown's summary of
    it, and the web tier's answers by cause (netgap.scenario.answers)."""

    lo: int
    hi: int
    summary: dict[str, Any]
    names: dict[str, str]
    answers: dict[str, int]


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


def _fault_faults(config: ScenarioConfig) -> Faults:
    phase = _fault_phase(config)
    return Faults() if phase is None else phase.faults


def _fault_json(config: ScenarioConfig) -> dict[str, Any] | None:
    phase = _fault_phase(config)
    return None if phase is None else phase.faults.to_json()


def _faults_text(config: ScenarioConfig) -> str:
    phase = _fault_phase(config)
    return "no faults" if phase is None else phase.faults.describe()


def _model(
    config: ScenarioConfig,
    phases: list[PhaseResult],
    exchange: model.Exchange,
    injector: model.Injector = model.PROXY,
) -> ModelInputs | None:
    phase = _fault_phase(config)
    measured = next((p for p in phases if p.faults_active), None)
    if phase is None or measured is None:
        return None
    load = load_of(config, phase, measured.new_connection_share)
    return ModelInputs.of(injector, link_of(phase.faults), load, exchange)
