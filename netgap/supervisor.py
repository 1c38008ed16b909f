"""One child process, started, watched and stopped: the collector, a tier, the fault proxy or a
bench helper, as `python -m <module>` (netgap.lab lines them up).

A Child writes its output to files, is ready when its health URL answers 200, stops with
SIGTERM (then SIGKILL), dies with its parent, may be pinned to cores, and says what /proc
knows of it: CPU seconds and resident memory. Also the ports it listens on (free ones, or a
check that one is free) and `pin_apart`, the cores of the API tier and its callers.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from netgap.errors import NetgapError, UsageError

PR_SET_PDEATHSIG = 1
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
TAIL_LINES = 20  # of its log, on a child that failed to start
HEALTH_POLL_S = 0.05


# -- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(host: str, port: int, flag: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"{flag} {port}: cannot listen on {host}:{port} ({exc.strerror})",
                hint=f"pick a free port with {flag}",
            ) from None


# -- what /proc says


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


# -- the child


class ChildFailed(NetgapError):
    """A child exited or never answered while starting; the hint names its log, and a note on
    the exception (shown in a traceback) holds the log's last lines."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message, hint=f"see {log}")
        self.log = log
        self.add_note(f"last lines of {log}:\n{log_tail(log)}")


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Launch:
    """How a child is started, beyond its command and environment."""

    cpus: set[int] | None = None  # pinned before exec (threads started later inherit it)
    launcher: tuple[str, ...] = ()  # what runs `python -m`, e.g. opentelemetry-instrument
    inherit_env: bool = True  # env added to ours; False: env is the child's whole environment
    cwd: Path | None = None
    append: bool = False  # to its log files, as a restarted child on the same files does


@dataclass
class Child:
    """`python -m <args>` with `env`, ready when `health_url` answers 200. Its stdout and stderr
    go to files (the same path: one file for both); `log` is the one to read when it fails."""

    name: str
    args: list[str]  # after `python -m`
    env: Mapping[str, str]
    health_url: str
    stdout: Path
    stderr: Path
    launch: Launch = field(default_factory=Launch)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    killed: bool = False  # the last stop needed SIGKILL

    @property
    def log(self) -> Path:
        return self.stderr

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    def start(self) -> None:
        mode = "ab" if self.launch.append else "wb"
        self.killed = False
        self.stdout.parent.mkdir(parents=True, exist_ok=True)
        with self.stdout.open(mode) as out:
            if self.stderr == self.stdout:
                self._spawn(out, subprocess.STDOUT)
                return
            with self.stderr.open(mode) as err:
                self._spawn(out, err)

    def _spawn(self, out: IO[bytes], err: IO[bytes] | int) -> None:
        launch = self.launch
        env = {**os.environ, **self.env} if launch.inherit_env else dict(self.env)
        self.proc = subprocess.Popen(  # noqa: S603 (our own modules, an argv, no shell)
            [*launch.launcher, sys.executable, "-m", *self.args],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=launch.cwd,
            # Ctrl-C in the terminal reaches us only; we stop the children in order.
            start_new_session=True,
            preexec_fn=_before_exec(launch.cpus),
        )

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exited():
                message = f"{self.name} exited with {self.returncode()} while starting"
                raise ChildFailed(message, self.log)
            with suppress(httpx.TransportError):
                if httpx.get(self.health_url, timeout=1, trust_env=False).status_code == 200:
                    return
            time.sleep(HEALTH_POLL_S)
        raise ChildFailed(f"{self.name} not healthy after {timeout_s:g} s", self.log)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def signal(self, signum: int) -> None:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout_s`; the exit code (None: it
        was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.killed = True
        return self.proc.returncode

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)


def _before_exec(cpus: set[int] | None) -> Callable[[], None]:
    def before_exec() -> None:
        """In the child, before exec: on its cores, and if we are killed outright (SIGKILL) the
        kernel sends it SIGTERM, so no tier or collector is left holding its port (Linux)."""
        if cpus:
            os.sched_setaffinity(0, cpus)
        if sys.platform == "linux":
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return before_exec


# -- cores


def pin_apart(api: Child, client_side: Sequence[Child]) -> dict[str, list[int]] | None:
    """The API tier on a core of its own, the processes that call it on another.

    In the story the tiers run on separate nodes. On one machine the scheduler moves the
    process it wakes to the waker's core: the API's answer wakes the proxy, which wakes the
    web tier, on the API's core, and the API's span (ended after the answer is out) then waits
    for the web tier's work: spells of API self time +1.5 ms and remote time near 0, for
    seconds at a time, which the fault (holding every answer) cannot have. A core for the API
    tier and another for the web tier (and the fault proxy) keep them apart. The cores, or None when
    there is only one (or no affinity control)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    placement = {api.name: [cores[-1]], **{child.name: [cores[0]] for child in client_side}}
    for child in (api, *client_side):
        _set_affinity(child, set(placement[child.name]))
    return placement


def _set_affinity(child: Child, cores: set[int]) -> None:
    """Every thread of the child, those started already included."""
    with suppress(OSError):  # a thread that ended meanwhile
        for tid in os.listdir(f"/proc/{child.pid}/task"):
            with suppress(OSError):
                os.sched_setaffinity(int(tid), cores)
