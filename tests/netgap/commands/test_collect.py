"""`netgap collect` as a user runs it: a process of its own, stopped with SIGTERM."""

import argparse
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from netgap.address import Address
from netgap.commands import collect as collect_module
from tests.harness import ROOT
from tests.netgap.collector.spans import hex_id, sdk_trace
from tests.netgap.commands.processes import collect, collect_command


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def test_collect_serves_stops_on_sigterm_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "traces.db"  # the folder is created
    spans = sdk_trace()
    with collect(db) as (proc, urls, banner):
        assert banner.startswith(
            f"netgap collect: 0 spans in {db} (keeping for 24h, up to 1000000 spans)"
        )
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1/traces", urls["otlp/http"])
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", urls["otlp/grpc"])
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v3/", urls["query"])
        assert OTLPSpanExporter(endpoint=urls["otlp/http"]).export(spans[:2]) == (
            SpanExportResult.SUCCESS
        )
        grpc_exporter = GrpcSpanExporter(endpoint=urls["otlp/grpc"], insecure=True, timeout=10)
        assert grpc_exporter.export(spans[2:]) == SpanExportResult.SUCCESS
        grpc_exporter.shutdown()
        before = httpx.get(f"{urls['query']}traces/{hex_id(spans[0])}", timeout=10)
        assert before.status_code == 200
        code, out, err = stop(proc)
    assert code == 0, err
    assert "stopped, 3 spans in" in out
    assert "Traceback" not in err
    with collect(db, "--otlp-grpc", "off", "--max-age", "0", "--max-spans", "0") as (
        proc,
        urls,
        banner,
    ):
        assert "\n  otlp/grpc off\n" in banner
        assert "3 spans in" in banner
        assert "(keeping everything)" in banner
        after = httpx.get(f"{urls['query']}traces/{hex_id(spans[0])}", timeout=10)
        assert after.content == before.content
        code, out, err = stop(proc)
    assert code == 0, err


def test_a_port_in_use_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = collect_command(
            "--db",
            str(tmp_path / "t.db"),
            "--otlp-http",
            "127.0.0.1:0",
            "--otlp-grpc",
            "off",
            "--query",
            f"127.0.0.1:{port}",
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2
    first, *rest = done.stderr.splitlines()
    assert first.startswith(f"netgap collect: --query 127.0.0.1:{port}: cannot listen on")
    assert all(line.startswith("  hint:") for line in rest)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "t.db").exists()  # nothing was started


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="netgap collect")
    collect_module.add_arguments(parser)
    return parser.parse_args(args)


def test_flag_values() -> None:
    defaults = parse()
    assert (defaults.otlp_http, defaults.otlp_grpc, defaults.query) == (
        Address("127.0.0.1", 4318),
        Address("127.0.0.1", 4317),
        Address("127.0.0.1", 16686),
    )
    assert (defaults.db, defaults.max_age, defaults.max_spans) == (
        Path(".netgap/traces.db"),
        86400.0,
        1_000_000,
    )
    assert defaults.max_body == 8 * 1024 * 1024
    given = parse(
        "--otlp-http=[::1]:4000",
        "--otlp-grpc=OFF",
        "--max-age=1h30m",
        "--max-spans=2_000",
        "--max-body=512KiB",
    )
    assert (given.otlp_http, given.otlp_grpc) == (Address("::1", 4000), None)
    assert (given.max_age, given.max_spans, given.max_body) == (5400.0, 2000, 512 * 1024)
    assert (parse("--max-age=0").max_age, parse("--max-spans=0").max_spans) == (None, None)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-spans", "-1"),
        ("--max-spans", "lots"),
        ("--max-age", "1d"),
        ("--max-age", "-5m"),
        ("--max-body", "8 parsecs"),
        ("--max-body", "0"),
        ("--otlp-http", "localhost"),
        ("--otlp-grpc", "127.0.0.1:70000"),
        ("--query", "off"),
    ],
)
def test_bad_flag_values(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(f"{flag}={value}")
    assert exited.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "collect", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0
    for flag in ("--otlp-http", "--otlp-grpc", "--query", "--db", "--max-age", "--max-spans"):
        assert flag in done.stdout
