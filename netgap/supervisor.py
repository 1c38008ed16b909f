"""Child processes the toolkit starts, watches and stops (the tiers, in the demo)."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from netgap.errors import NetgapError, UsageError


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


def _die_with_parent() -> None:
    """In the child, before exec: if we are killed outright (SIGKILL), the kernel sends the
    child SIGTERM, so no tier or collector is left holding its port (Linux only)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    args: list[str]  # after `python -m`
    env: Mapping[str, str]
    health_url: str
    stdout: Path
    stderr: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(  # noqa: S603 (our own modules, an argv, no shell)
                [sys.executable, "-m", *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                # Ctrl-C in the terminal reaches us only; we stop the children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exited():
                raise NetgapError(
                    f"{self.name} exited with {self.returncode()} while starting",
                    hint=f"see {self.stderr}",
                )
            try:
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise NetgapError(
            f"{self.name} not healthy after {timeout_s:g} s", hint=f"see {self.stderr}"
        )

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout_s`; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def pin_apart(api: Child, client_side: list[Child]) -> dict[str, list[int]] | None:
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
    if child.proc is None:
        raise RuntimeError(f"{child.name} was not started")
    with suppress(OSError):  # a thread that ended meanwhile
        for tid in os.listdir(f"/proc/{child.proc.pid}/task"):
            with suppress(OSError):
                os.sched_setaffinity(int(tid), cores)
