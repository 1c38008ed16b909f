"""The processes a bench run starts (tiers, collector, proxy, a span sink), pinned to cores:
netgap.lab's children (netgap.supervisor.Child, which also reads their CPU seconds and
resident memory from /proc), on fresh ports, each logging to <logs>/<name>.log; and what
/proc says about the machine."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from netgap import lab
from netgap.supervisor import Child, Launch, free_port

HOST = lab.HOST
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def machine_busy_s() -> float:
    """CPU seconds spent not idle, all cores, since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICK


def url(port: int, path: str = "/") -> str:
    return lab.url(HOST, port, path)


def _files(logs: Path, name: str) -> lab.Files:
    """stdout and stderr both in <logs>/<name>.log."""
    return lab.Logs(logs, ".log", ".log").files(name)


@dataclass
class Tiers:
    """A web tier and its API tier."""

    label: str
    web: Child
    api: Child

    @property
    def url(self) -> str:
        return self.web.health_url.removesuffix("healthz")

    def cpu_s(self) -> float:
        return self.web.cpu_s() + self.api.cpu_s()


def tiers(
    label: str,
    logs: Path,
    *,
    query_delay_ms: float,
    otel: Mapping[str, str],
    web_cpus: set[int] | None,
    api_cpus: set[int] | None,
    modules: tuple[str, str] = ("webtier", "apitier"),
) -> Tiers:
    """OTEL_* in `otel` (e.g. OTEL_SDK_DISABLED=true, or the endpoint) for both tiers;
    `modules`, the web and API tiers' (bench.stock's for the anchor)."""
    web_port, api_port = free_port(HOST), free_port(HOST)
    api_name, web_name = f"{label}-apitier", f"{label}-webtier"
    api = lab.tier(
        api_name,
        [modules[1]],
        HOST,
        api_port,
        {**otel, "QUERY_DELAY_MS": f"{query_delay_ms:g}"},
        _files(logs, api_name),
        Launch(cpus=api_cpus),
    )
    web = lab.tier(
        web_name,
        [modules[0]],
        HOST,
        web_port,
        {**otel, "API_URL": url(api_port)},
        _files(logs, web_name),
        Launch(cpus=web_cpus),
    )
    return Tiers(label, web, api)


def collector(name: str, logs: Path, db: Path, cpus: set[int] | None = None) -> tuple[Child, str]:
    """`netgap collect` (OTLP/HTTP only, no span limit) on fresh ports; the process and its
    OTLP endpoint."""
    otlp, query = free_port(HOST), free_port(HOST)
    proc = lab.collector(
        f"{HOST}:{otlp}",
        f"{HOST}:{query}",
        db,
        _files(logs, name),
        name=name,
        max_spans=0,
        launch=Launch(cpus=cpus),
    )
    return proc, url(otlp, "")


def query_url(collector_proc: Child) -> str:
    return collector_proc.health_url.removesuffix("/api/v3/services")


def sink(logs: Path, cpus: set[int] | None = None) -> tuple[Child, str]:
    """bench.sink: answers every OTLP export at once and keeps nothing; its endpoint."""
    port = free_port(HOST)
    proc = Child(
        "sink",
        ["bench.sink", str(port)],
        {},
        url(port, "/healthz"),
        *_files(logs, "sink"),
        Launch(cpus=cpus),
    )
    return proc, url(port, "")


def proxy(logs: Path, upstream_port: int, cpus: set[int] | None) -> tuple[Child, int]:
    """`netgap fault proxy` with no faults in front of `upstream_port`; it and its port."""
    listen, control = free_port(HOST), free_port(HOST)
    proc = lab.fault_proxy(
        f"{HOST}:{listen}",
        f"{HOST}:{upstream_port}",
        f"{HOST}:{control}",
        _files(logs, "proxy"),
        name="proxy",
        launch=Launch(cpus=cpus),
    )
    return proc, listen
