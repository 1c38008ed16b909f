"""The phase driver of `netgap scenario`: each phase's faults set at its edge, then its own load
generator started, on the wall clock's schedule; the web tier's remote-time metric scraped at
every edge; the faults cleared at the end, and the load drained.

The load runs open loop through every phase, one generator per phase so that each request is
counted in the phase it started in (a request issued during the fault that ends after it is a
fault request). Ctrl-C or SIGTERM stop every generator, abandon what is in flight and raise
Interrupted (the caller clears the faults and stops the lab).
"""

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import httpx

from netgap import aio, promtext
from netgap.errors import NetgapError
from netgap.fault.spec import Faults
from netgap.loadgen import LoadConfig, LoadGenerator, LoadResult
from netgap.scenario import kernel
from netgap.scenario.config import Phase, ScenarioConfig

CONTROL_TIMEOUT_S = 5.0
# The load waits this much longer than the web tier waits for the API, so that a slow
# request ends as the web tier's answer (a 504 at worst), never as the load's own timeout.
LOAD_TIMEOUT_MARGIN_S = 10.0

Say = Callable[[str], None]


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


def run_phases(
    config: ScenarioConfig, control_url: str | None, overlay: kernel.Overlay | None, say: Say
) -> list[PhaseRun]:
    """Every phase, in turn; Interrupted if a signal stopped them. `control_url`: the fault
    proxy's (None: no proxy), `overlay`: kernel mode's (None: the proxy holds every fault)."""
    # The event loop takes SIGTERM over while it runs and leaves it at the default after.
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        runs = aio.run(_drive(config, control_url, overlay, say))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    if runs is None:
        raise Interrupted
    return runs


async def _drive(
    config: ScenarioConfig, control_url: str | None, overlay: kernel.Overlay | None, say: Say
) -> list[PhaseRun] | None:
    """Each phase's faults, then its load, on schedule; None if a signal stopped it."""
    loads = _Loads()
    with _signals_cancel_this_task() as signals:
        try:
            async with httpx.AsyncClient(timeout=CONTROL_TIMEOUT_S, trust_env=False) as control:
                faults = _FaultSetter(control, control_url, overlay)
                driver = _Driver(config, faults, control, say, loads)
                results = await driver.run()
        except asyncio.CancelledError:
            await loads.abandon()
            if signals.caught:
                return None
            raise
    return driver.runs(results)


@dataclass
class _Signals:
    caught: bool = False


@contextmanager
def _signals_cancel_this_task() -> Iterator[_Signals]:
    """While inside, Ctrl-C and SIGTERM cancel the running task (and say so)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is None:
        raise RuntimeError("run inside a task")
    signals = _Signals()

    def on_signal() -> None:
        signals.caught = True
        main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        yield signals
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@dataclass
class _Loads:
    """The phases' load generators, one a phase, and their runs."""

    generators: list[LoadGenerator] = field(default_factory=list)
    tasks: list[asyncio.Task[LoadResult]] = field(default_factory=list)

    def start(self, config: LoadConfig) -> None:
        generator = LoadGenerator(config)
        self.generators.append(generator)
        self.tasks.append(asyncio.create_task(generator.run()))

    async def results(self) -> list[LoadResult]:
        return list(await asyncio.gather(*self.tasks))

    async def abandon(self) -> None:
        for generator in self.generators:
            generator.stop()
            generator.stop()  # the second stop abandons what is in flight
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class _Driver:
    """The phases on the schedule, and what was seen at their edges."""

    config: ScenarioConfig
    faults: "_FaultSetter"
    client: httpx.AsyncClient  # for the web tier's metrics
    say: Say
    loads: _Loads
    starts: list[int] = field(default_factory=list)  # every edge, the last phase's end too
    load_starts: list[int] = field(default_factory=list)
    scrapes: list[promtext.Histogram] = field(default_factory=list)  # at every edge

    async def run(self) -> list[LoadResult]:
        # A phase runs from when it is due to when the next one is, on the wall clock as
        # the schedule says, not as read once its faults were set and the metrics scraped:
        # those take a moment (longer on a busy machine), and reading the clock after them
        # moved the phase's edges off its load's schedule. The last phase's window came
        # out that much short of its requests; the settle margin covers the moment now.
        origin, origin_ns = asyncio.get_running_loop().time(), time.time_ns()
        offset_s = 0.0
        for phase in self.config.phases:
            await self._edge(origin, origin_ns, offset_s)
            await self._begin(phase)
            offset_s += phase.duration_s
        await self._edge(origin, origin_ns, offset_s)
        await self.faults.set(Faults())
        self.say("waiting for the requests still in flight ...")
        results = await self.loads.results()
        self.scrapes.append(await self._remote())
        return results

    async def _edge(self, origin: float, origin_ns: int, offset_s: float) -> None:
        """Waits until `offset_s` into the schedule, and keeps that moment as an edge."""
        await asyncio.sleep(max(0.0, origin + offset_s - asyncio.get_running_loop().time()))
        self.starts.append(origin_ns + round(offset_s * 1e9))

    async def _begin(self, phase: Phase) -> None:
        await self.faults.set(phase.faults)
        self.scrapes.append(await self._remote())
        self.say(f"{phase.name}: {phase.duration_s:g} s, {phase.faults.describe()}")
        self.load_starts.append(time.time_ns())
        self.loads.start(_load_config(self.config, phase.duration_s))

    async def _remote(self) -> promtext.Histogram:
        url = self.config.url(self.config.ports.web, "/metrics")
        return promtext.histogram(await promtext.scrape(self.client, url), promtext.REMOTE)

    def runs(self, results: list[LoadResult]) -> list[PhaseRun]:
        return [
            PhaseRun(
                phase,
                self.starts[i],
                self.starts[i + 1],
                result,
                self.scrapes[i + 1].since(self.scrapes[i]),
                self.load_starts[i],
            )
            for i, (phase, result) in enumerate(zip(self.config.phases, results, strict=True))
        ]


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


# -- the faults


@dataclass(frozen=True)
class _FaultSetter:
    control: httpx.AsyncClient
    url: str | None  # the fault proxy's control API (None: no proxy)
    overlay: kernel.Overlay | None  # kernel mode's

    async def set(self, faults: Faults) -> None:
        """The phase's faults in force: all through the proxy, or in kernel mode the kernel's
        part by tc (off the event loop: the commands take a while) and the latency through
        the proxy when there is no netem."""
        proxy_faults = faults
        if self.overlay is not None:
            await asyncio.to_thread(self.overlay.set_faults, faults)
            proxy_faults = self.overlay.split(faults).proxy
        if self.url is not None:
            await _apply_faults(self.control, self.url, proxy_faults)


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


def clear_faults(url: str) -> None:
    """Best effort, on the way out: the proxy may be gone already."""
    with suppress(httpx.HTTPError):
        httpx.delete(url, timeout=CONTROL_TIMEOUT_S, trust_env=False)
