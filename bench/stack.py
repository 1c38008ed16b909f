"""The processes a bench run starts (tiers, collector, proxy, a span sink), pinned to cores,
and what /proc says about them: CPU seconds and resident memory."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def rss_mb(pid: int) -> float:
    """VmRSS in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_busy_s() -> float:
    """CPU seconds spent not idle, all cores, since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICK


@dataclass
class Proc:
    """One child process: `python -m <args>` with `env` added, pinned to `cpus` (None: any)."""

    name: str
    args: list[str]
    env: Mapping[str, str]
    health_url: str
    logs: Path
    cpus: set[int] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.log"

    def start(self) -> None:
        cpus = self.cpus

        def before_exec() -> None:
            if cpus:  # threads started later inherit it
                os.sched_setaffinity(0, cpus)
            # Killed outright, we still take the child with us (Linux).
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 (our own modules, an argv, no shell)
                [sys.executable, "-m", *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=before_exec,
            )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None:
                raise RuntimeError(f"{self.name} was not started")
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"{self.name} exited with {code}; see {self.log}")
            with suppress(httpx.TransportError):
                if httpx.get(self.health_url, timeout=1).status_code < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy after {START_TIMEOUT_S:g} s; see {self.log}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)


@contextmanager
def running(*procs: Proc) -> Iterator[None]:
    """Starts them all at once, waits until each is healthy; stops them in reverse order."""
    with ExitStack() as stack:
        for proc in procs:
            stack.callback(proc.stop)
            proc.start()
        for proc in procs:
            proc.wait_healthy()
        yield


def url(port: int, path: str = "/") -> str:
    return f"http://{HOST}:{port}{path}"


@dataclass
class Tiers:
    """A web tier and its API tier."""

    label: str
    web: Proc
    api: Proc

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
    web_port, api_port = free_port(), free_port()
    api = Proc(
        f"{label}-apitier",
        [modules[1]],
        {**otel, "HOST": HOST, "PORT": str(api_port), "QUERY_DELAY_MS": f"{query_delay_ms:g}"},
        url(api_port, "/healthz"),
        logs,
        api_cpus,
    )
    web = Proc(
        f"{label}-webtier",
        [modules[0]],
        {**otel, "HOST": HOST, "PORT": str(web_port), "API_URL": url(api_port)},
        url(web_port, "/healthz"),
        logs,
        web_cpus,
    )
    return Tiers(label, web, api)


def collector(name: str, logs: Path, db: Path, cpus: set[int] | None = None) -> tuple[Proc, str]:
    """`netgap collect` (OTLP/HTTP only) on fresh ports; the process and its OTLP endpoint."""
    otlp, query = free_port(), free_port()
    proc = Proc(
        name,
        ["netgap", "collect", "--otlp-http", f"{HOST}:{otlp}", "--otlp-grpc", "off",
         "--query", f"{HOST}:{query}", "--db", str(db), "--max-spans", "0"],
        {},
        url(query, "/api/v3/services"),
        logs,
        cpus,
    )  # fmt: skip
    return proc, url(otlp, "")


def query_url(collector_proc: Proc) -> str:
    return collector_proc.health_url.removesuffix("/api/v3/services")


def sink(logs: Path, cpus: set[int] | None = None) -> tuple[Proc, str]:
    """bench.sink: answers every OTLP export at once and keeps nothing; its endpoint."""
    port = free_port()
    proc = Proc("sink", ["bench.sink", str(port)], {}, url(port, "/healthz"), logs, cpus)
    return proc, url(port, "")


def proxy(logs: Path, upstream_port: int, cpus: set[int] | None) -> tuple[Proc, int]:
    """`netgap fault proxy` with no faults in front of `upstream_port`; it and its port."""
    listen, control = free_port(), free_port()
    proc = Proc(
        "proxy",
        ["netgap", "fault", "proxy", "--listen", f"{HOST}:{listen}",
         "--upstream", f"{HOST}:{upstream_port}", "--control", f"{HOST}:{control}"],
        {},
        url(control, "/faults"),
        logs,
        cpus,
    )  # fmt: skip
    return proc, listen
