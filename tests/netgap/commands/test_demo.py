"""`netgap demo`, as a user runs it (what `make demo` runs)."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness import ROOT, free_port


def start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {
        flag: free_port() for flag in ("--web-port", "--api-port", "--otlp-port", "--query-port")
    }
    port_args = [str(x) for pair in ports.items() for x in pair]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netgap",
            "demo",
            "--logs",
            str(tmp_path / "demo"),
            *port_args,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    return proc, ports


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 60) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and marker not in seen:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert marker in seen, seen
    return seen


def test_demo_tells_the_story_and_stops(tmp_path: Path) -> None:
    proc, ports = start_demo(
        tmp_path, "--load-rate", "20", "--load-for", "3", "--exit-after-report"
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "first request: 200" in out
    assert "load: 60 sent, 60 ok" in out
    assert "traces of webtier" in out
    assert "webtier->apitier remote" in out
    assert "every outbound call paired with its server span" in out
    assert f"http://127.0.0.1:{ports['--query-port']}/trace/" in out
    assert (tmp_path / "demo" / "breakdown.png").stat().st_size > 10_000
    assert "Traceback" not in out


def test_demo_runs_until_ctrl_c(tmp_path: Path) -> None:
    proc, ports = start_demo(tmp_path, "--load-for", "0")
    try:
        banner = read_until(proc, "Ctrl-C stops everything.")
        web = f"http://127.0.0.1:{ports['--web-port']}/"
        assert web in banner
        page = httpx.get(web)
        assert "Hello, from the API tier!" in page.text
        assert f"http://127.0.0.1:{ports['--query-port']}/trace/" in page.text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "stopped (exit codes [0, 0, 0])" in out


def test_demo_refuses_a_port_in_use_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netgap",
                "demo",
                "--web-port",
                str(port),
                "--otlp-port",
                str(free_port()),
                "--query-port",
                str(free_port()),
                "--api-port",
                str(free_port()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"--web-port {port}: cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out


def test_killing_the_demo_outright_leaves_nothing_listening(tmp_path: Path) -> None:
    proc, ports = start_demo(tmp_path, "--load-for", "0")
    try:
        read_until(proc, "Ctrl-C stops everything.")
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        busy = []
        for port in ports.values():
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        if not busy:
            return
        time.sleep(0.2)
    raise AssertionError(f"still listening after the demo was killed: {busy}")
