"""netgap's long-running commands as a user runs them, each a process of its own:
`netgap collect` until its banner is out, `netgap fault proxy` until its ready line, and any
other command run to its end. Shared by the command tests, the survival tests and the benches."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from netgap.address import Address, parse_address
from tests.harness import ROOT

READY = re.compile(
    r"netgap fault proxy: listening on (\S+) -> upstream (\S+), control (\S+), faults: (.*)"
)


def netgap(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "netgap", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


@dataclass
class ProxyProcess:
    process: "subprocess.Popen[str]"
    address: Address
    control_url: str
    faults: str  # as the ready line describes them

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Signals it and waits: the exit code and the rest of stderr."""
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stderr


@contextmanager
def fault_proxy(upstream: Address, *flags: str) -> Iterator[ProxyProcess]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "netgap", "fault", "proxy"),
            *("--listen", "127.0.0.1:0", "--upstream", str(upstream)),
            *("--control", "127.0.0.1:0", *flags),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = next_line(process)
        ready = READY.fullmatch(line)
        assert ready, f"not the ready line: {line!r}"
        yield ProxyProcess(process, parse_address(ready[1]), ready[3], ready[4])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def next_line(process: "subprocess.Popen[str]") -> str:
    """One byte at a time from the pipe itself: a buffered readline could take the next line
    too, where neither select nor `communicate` would see it."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    line = b""
    deadline = time.monotonic() + 15
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no whole line on stderr within 15 s: {line!r}"
        byte = os.read(fd, 1)
        assert byte, f"stderr ended: {line!r}"
        line += byte
    return line.decode().rstrip("\n")


ANY_PORT = "127.0.0.1:0"


def collect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "netgap", "collect", *args]


@contextmanager
def collect(db: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], str]]:
    """Runs `netgap collect` on free ports until its banner is out; yields the process, the
    URLs it printed by listener, and the banner."""
    argv = collect_command(
        "--db",
        str(db),
        "--otlp-http",
        ANY_PORT,
        "--otlp-grpc",
        ANY_PORT,
        "--query",
        ANY_PORT,
        *args,
    )
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        banner = []
        for _ in range(10):  # the banner is six lines
            line = proc.stdout.readline()
            banner.append(line)
            if not line or line.startswith("Ctrl-C"):
                break
        text = "".join(banner)
        urls = dict(re.findall(r"^  (\S+) on (\S+)$", text, re.M))
        assert set(urls) >= {"otlp/http", "query"}, text + _rest(proc)
        yield proc, urls, text
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _rest(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    out, err = proc.communicate(timeout=10)
    return out + err
