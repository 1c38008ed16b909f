"""`netgap demo`, as a user runs it (what `make demo` runs)."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness import ROOT, free_port


def start_demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "netgap", "demo", "--logs", str(tmp_path / "demo"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 30) -> str:
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


def test_demo_runs_both_tiers_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    web_port, api_port = free_port(), free_port()
    proc = start_demo(tmp_path, "--web-port", str(web_port), "--api-port", str(api_port))
    try:
        banner = read_until(proc, "first request:")
        assert f"http://127.0.0.1:{web_port}/" in banner
        assert "first request: 200" in banner
        assert "web;dur=" in banner
        response = httpx.get(f"http://127.0.0.1:{web_port}/")
        assert "Hello, from the API tier!" in response.text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "stopped (web tier exit 0, API tier exit 0)" in out
    # Both requests' spans reached the console exporter's files, one JSON span a line.
    logs = tmp_path / "demo"
    spans = [
        json.loads(line)
        for name in ("webtier", "apitier")
        for line in (logs / f"{name}.spans.jsonl").read_text().splitlines()
    ]
    assert len(spans) == 10
    assert len({s["context"]["trace_id"] for s in spans}) == 2


def test_demo_refuses_a_port_in_use_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_demo(tmp_path, "--web-port", str(port), "--api-port", str(free_port()))
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"--web-port {port}: cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out
