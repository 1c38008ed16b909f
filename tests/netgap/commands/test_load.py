"""`netgap load` as a command, through netgap's own entry point (in process, or `python -m
netgap` for signals and terminals): flags, output, exit codes, against loopback servers."""

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from netgap.cli import build_parser, main
from tests.harness import ROOT, free_port
from tests.servers import http_response, raw_http_server, serve

pytestmark = pytest.mark.timeout(60)

SUMMARY_KEYS = {
    "record",
    "url",
    "arrivals",
    "rate_asked",
    "duration_asked_s",
    "elapsed_s",
    "sent",
    "ok",
    "errors",
    "errors_by_kind",
    "rate",
    "latency_ms",
    "send_lag_max_ms",
}
INTERVAL_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  sent \d+  ok \d+  errors \d+  rate [\d.]+/s  "
    r"p50 ([\d.]+ ms|-)  p99 ([\d.]+ ms|-)"
)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["load", *argv])


def netgap_load(*argv: str) -> int | str | None:
    """`netgap load ARGV` run as the command line runs it; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main(["load", *argv])
    return exited.value.code


def start(*argv: str, stderr: int = subprocess.PIPE) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "netgap", "load", *argv],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=ROOT,
    )


def test_json_prints_one_object_with_stable_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with serve() as server:
        code = netgap_load(server.url, "--rate", "50", "--duration", "200ms", "--json")
    assert code == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    summary = json.loads(out)
    assert set(summary) == SUMMARY_KEYS
    assert summary["record"] == "summary"
    assert summary["url"] == server.url
    assert summary["arrivals"] == "constant"
    assert summary["rate_asked"] == 50
    assert summary["duration_asked_s"] == 0.2
    assert summary["sent"] == summary["ok"] == 10
    assert summary["errors"] == 0
    assert summary["errors_by_kind"] == {}
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}
    assert all(isinstance(v, float) for v in summary["latency_ms"].values())


def test_table_lists_errors_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    # Every other request is held past the timeout: some ok, some timeouts.
    with serve(lambda n: 5.0 if n % 2 else 0.0) as server:
        argv = (server.url, "--rate", "20", "--duration", "0.3", "--timeout", "0.2")
        assert netgap_load(*argv) == 0
    rows = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1)
        for line in capsys.readouterr().out.splitlines()
    )
    assert rows["url"] == server.url
    assert rows["asked"] == "20 req/s, constant"
    assert rows["sent"] == "6"
    assert int(rows["ok"]) + int(rows["errors"]) == 6
    assert rows["timeout"] == rows["errors"]
    assert rows["rate"].endswith(" req/s")
    for name in ("p50", "p90", "p99", "p99.9", "max"):
        assert rows[f"latency {name}"].endswith(" ms")


def test_every_request_failing_exits_1_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    assert netgap_load(url, "--rate", "20", "--duration", "0.2") == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"netgap load: every request to {url} failed (4 connect)",
        "  hint: is the server up and listening there?",
    ]
    assert "connect" in out  # the summary still comes first


def test_every_answer_an_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with raw_http_server(http_response("500 Internal Server Error", b"no")) as url:
        argv = (f"{url}/", "--rate", "20", "--duration", "0.2", "--json")
        assert netgap_load(*argv) == 1
    assert capsys.readouterr().err == f"netgap load: every request to {url}/ failed (4 5xx)\n"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["ftp://example.com/", "--rate", "1"], "URL"),
        (["example.com", "--rate", "1"], "URL"),
        (["http://127.0.0.1:99999/", "--rate", "1"], "URL"),
        (["http://127.0.0.1/"], "--rate"),
        (["http://127.0.0.1/", "--rate", "0"], "--rate"),
        (["http://127.0.0.1/", "--rate", "-5"], "--rate"),
        (["http://127.0.0.1/", "--rate", "lots"], "--rate"),
        (["http://127.0.0.1/", "--rate", "1", "--duration", "5x"], "--duration"),
        (["http://127.0.0.1/", "--rate", "1", "--duration", "-1s"], "--duration"),
        # with `=`, argparse hands the value over: the type must refuse it
        (
            ["http://127.0.0.1/", "--rate", "1", "--duration=-1s"],
            "--duration: must not be negative",
        ),
        (["http://127.0.0.1/", "--rate", "1", "--max-inflight", "0"], "--max-inflight"),
        (["http://127.0.0.1/", "--rate", "1", "--timeout", "0"], "--timeout"),
        (["http://127.0.0.1/", "--rate", "1", "--interval", "0s"], "--interval"),
        (["http://127.0.0.1/", "--rate", "1", "--header", "no-colon"], "--header"),
        (["http://127.0.0.1/", "--rate", "1", "--seed", "x"], "--seed"),
    ],
)
def test_a_bad_flag_exits_2_with_one_line_naming_it(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert netgap_load(*argv) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("netgap load: ")
    assert f": argument {flag}" in error or f"required: {flag}" in error


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("1.5", 1.5), ("0", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse("http://127.0.0.1/", "--rate", "1", "--duration", text).duration == seconds


def test_headers_parse_as_pairs() -> None:
    args = parse("http://127.0.0.1/", "--rate", "1", "--header", "A: b:c", "--header", "X-Y:z")
    assert args.header == [("A", "b:c"), ("X-Y", "z")]


def test_seed_without_poisson_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert netgap_load("http://127.0.0.1/", "--rate", "1", "--seed", "3") == 2
    assert capsys.readouterr().err.splitlines() == [
        "netgap load: --seed only applies to --poisson arrivals",
        "  hint: add --poisson",
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_a_run_forever_with_the_summary_and_exit_0(signum: int) -> None:
    with serve() as server:
        argv = ("--rate", "50", "--duration", "0", "--interval", "0.3s", "--json")
        proc = start(server.url, *argv)
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())  # blocks until the first interval
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert err == ""  # no progress line (stderr is no terminal), no traceback
    assert first["record"] == "interval"
    assert set(first) == {
        "record",
        "time",
        "elapsed_s",
        "sent",
        "ok",
        "errors",
        "rate",
        "latency_ms",
    }
    *intervals, summary = [json.loads(line) for line in out.splitlines()]
    assert all(line["record"] == "interval" for line in intervals)
    assert summary["record"] == "summary"
    assert set(summary) == SUMMARY_KEYS
    assert summary["sent"] >= first["sent"] > 0
    assert summary["ok"] == summary["sent"]
    assert summary["errors"] == 0


def test_interval_lines_in_text(tmp_path: object) -> None:
    with serve() as server:
        proc = start(server.url, "--rate", "50", "--duration", "0", "--interval", "0.2s")
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            second = proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert INTERVAL_LINE.fullmatch(first.rstrip("\n")), first
    assert INTERVAL_LINE.fullmatch(second.rstrip("\n")), second
    assert "sent " in out


def test_progress_goes_to_stderr_only_on_a_terminal() -> None:
    controller, terminal = os.openpty()
    with serve() as server:
        proc = start(server.url, "--rate", "20", "--duration", "1", "--json", stderr=terminal)
        os.close(terminal)
        shown = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=20)
    os.close(controller)
    assert proc.returncode == 0
    assert json.loads(out)["sent"] == 20  # stdout is the summary alone
    text = shown.decode()
    assert "\r" in text
    assert re.search(r"\d+\.\ds/1s  sent \d+  ok \d+  errors 0  in flight \d+", text), text
    assert text.endswith("\r")  # cleared before the summary


def test_netgap_load_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "load", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0
    assert "--max-inflight" in done.stdout
    assert "coordinated omission" in done.stdout


def test_netgap_load_bad_rate_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "load", "http://127.0.0.1/", "--rate", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2
    assert "argument --rate: must be more than 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_netgap_load_connection_refused_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "load", url, "--rate", "10", "--duration", "0.2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"netgap load: every request to {url} failed" in done.stderr
