"""HTTP figures with wrk (Debian's wrk 4.x, closed loop): one run, parsed."""

import re
import shutil
import subprocess
import time
from dataclasses import dataclass

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_COUNT = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found: apt-get install wrk (Debian's package)")
    return found


def wrk_version() -> str:
    out = subprocess.run(  # noqa: S603 (a fixed argv, no shell)
        [wrk_path(), "-v"], capture_output=True, text=True, check=False
    )
    return (out.stdout + out.stderr).split("Copyright")[0].strip()


@dataclass(frozen=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    errors: int  # non-2xx/3xx answers and socket errors
    p50_ms: float
    p99_ms: float
    started: float  # time.time_ns() / 1e9 at the start
    ended: float

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s


def parse(output: str, connections: int, started: float, ended: float) -> WrkResult:
    counted = _COUNT.search(output)
    if counted is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    latency = {int(q): float(v) * _UNITS[unit] for q, v, unit in _LATENCY.findall(output)}
    errors = sum(int(n) for n in _NON_2XX.findall(output))
    socket_errors = _SOCKET.search(output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        connections=connections,
        duration_s=float(counted.group(2)) * _UNITS[counted.group(3)] / 1000,
        requests=int(counted.group(1)),
        errors=errors,
        p50_ms=latency[50],
        p99_ms=latency[99],
        started=started,
        ended=ended,
    )


def wrk(url: str, connections: int, duration_s: float, cpu: int | None) -> WrkResult:
    """One wrk thread with `connections` keep-alive connections for `duration_s`, pinned to
    `cpu` (taskset) when given."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    seconds = max(1, round(duration_s))  # wrk takes whole seconds
    argv = [*pin, wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "--timeout", "10s", url]  # fmt: skip
    started = time.time_ns() / 1e9
    out = subprocess.run(  # noqa: S603 (argv built above from numbers and our URL; no shell)
        argv, capture_output=True, text=True, check=True, timeout=duration_s + 60
    )
    return parse(out.stdout, connections, started, time.time_ns() / 1e9)
