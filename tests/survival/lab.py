"""What the survival tests share: `netgap load` as a process, and the tiers as seen from outside
(their request log lines, /proc's RSS and TCP tables). Nothing here stands in for our code."""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.harness import ROOT, Tier

INTERVAL_S = 0.5  # `netgap load` prints a line this often; the first one says it is sending
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
# A socket that can carry a call: ESTABLISHED, or SYN_SENT (one being opened). Not CLOSE_WAIT:
# the peer has closed it, no call is in flight on it, and the pool may already have its slot
# back for one loop turn before our side closes it too.
TCP_OPEN_STATES = {"01": "established", "02": "syn-sent"}


@dataclass
class LoadRun:
    """A `netgap load --duration 0` process, sending since its first interval line."""

    process: "subprocess.Popen[str]"
    started_at: float  # wall clock, when its first interval line arrived
    summary: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, as a user stops a run forever: it waits for what is in flight, then prints
        the summary, which this returns."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=STOP_TIMEOUT_S)
        assert self.process.returncode == 0, f"netgap load exited {self.process.returncode}: {err}"
        # The last line: what came before it may start mid-line (the first interval line was
        # read through the pipe's buffered reader, communicate() reads the raw pipe).
        self.summary = json.loads(out.splitlines()[-1])
        assert self.summary["record"] == "summary", self.summary
        return self.summary


@contextmanager
def netgap_load(url: str, rate: float, timeout_s: float) -> Iterator[LoadRun]:
    """`netgap load URL --rate RATE --duration 0` until stop(); yields once it is sending."""
    argv = [sys.executable, "-m", "netgap", "load", url, "--rate", f"{rate:g}", "--duration", "0"]
    argv += ["--interval", f"{INTERVAL_S:g}s", "--timeout", f"{timeout_s:g}s", "--json"]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
        assert ready, f"netgap load printed nothing in {START_TIMEOUT_S:g} s"
        first = json.loads(process.stdout.readline())
        assert first["record"] == "interval", first
        yield LoadRun(process, time.time())
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Served:
    """One request as a tier's log line tells it; times are the wall clock, in seconds."""

    status: int
    start: float
    end: float
    trace_id: str
    error: str | None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def served(tier: Tier, path: str = "/") -> list[Served]:
    """Every request to `path` the tier has logged, in the order they ended."""
    return [
        Served(
            status=line["status"],
            start=_epoch(line["ts"]) - line["duration_ms"] / 1000,
            end=_epoch(line["ts"]),
            trace_id=line["trace_id"],
            error=line.get("error"),
        )
        for line in tier.request_logs()
        if line["path"] == path
    ]


def _epoch(stamp: str) -> float:
    # Log stamps are UTC with milliseconds: 2026-12-04T11:16:34.123Z
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def log_messages(tier: Tier, containing: str) -> list[str]:
    return [line["msg"] for line in tier.log_lines() if containing in line["msg"]]


def pid_of(tier: Tier) -> int:
    assert tier.proc is not None, f"{tier.module} is not running"
    return tier.proc.pid


def rss_mb(tier: Tier) -> float:
    for line in Path(f"/proc/{pid_of(tier)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {tier.module}")


def open_connections_to(port: int, pid: int) -> list[str]:
    """The states of the TCP sockets process `pid` holds connected to 127.0.0.1:`port`, as the
    kernel lists them: what the client really holds open, whatever its pool believes. Only that
    process's: a socket elsewhere on the host with the same remote port is not its pool's."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    held = socket_inodes(pid)  # read second: a socket it opened meanwhile is still listed
    peer = f"0100007F:{port:04X}"
    states = []
    for line in table:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if remote == peer and state in TCP_OPEN_STATES and inode in held:
            states.append(TCP_OPEN_STATES[state])
    return states


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets among the open files of process `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed between the listing and the read
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


class ConnectionCount:
    """Samples `open_connections_to(port, pid)` every `every_s` in a thread, keeping the most
    seen."""

    def __init__(self, port: int, pid: int, every_s: float = 0.02) -> None:
        self.port = port
        self.pid = pid
        self.every_s = every_s
        self.most = 0
        self.at_most: Counter[str] = Counter()  # their states, at the most
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ConnectionCount":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            states = open_connections_to(self.port, self.pid)
            if len(states) > self.most:
                self.most = len(states)
                self.at_most = Counter(states)
            self.samples += 1
