"""tierkit.lean.spans emits the spans opentelemetry-instrumentation-fastapi/-httpx do under the
stable HTTP conventions: the same requests through both (tests/tierkit/lean/conformance.py, on a
real socket) give the same names, kinds, statuses, parents and attributes, but for the documented
difference (`server.address` without the port) and the ports of two different servers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CLIENT, INTERNAL, ROOT, SERVER, OtlpReceiver, Span, one_trace

PORT = re.compile(r"(?<=:)\d+|^\d+$")


@pytest.fixture(scope="module")
def spans() -> dict[str, list[dict[str, Any]]]:
    env = {**os.environ, "OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.tierkit.lean.conformance"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=True,
    )  # fmt: skip
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    return {run["stack"]: run["spans"] for run in runs}


def comparable(span: dict[str, Any]) -> dict[str, Any]:
    attributes = {
        key: PORT.sub("PORT", str(value)) if key.endswith((".port", ".full", ".address")) else value
        for key, value in span["attributes"].items()
    }
    if span["kind"] == "SERVER":  # contrib keeps the Host header's port; the conventions do not
        attributes["server.address"] = attributes["server.address"].removesuffix(":PORT")
    return {**span, "attributes": attributes}


def test_our_spans_are_contribs_spans(spans: dict[str, list[dict[str, Any]]]) -> None:
    assert len(spans["contrib"]) == 6  # a SERVER and a CLIENT span for each of 3 requests
    assert [comparable(s) for s in spans["ours"]] == [comparable(s) for s in spans["contrib"]]
    assert {s["name"] for s in spans["ours"]} == {"GET", "GET /items/{item_id}", "GET /fail"}


def test_the_difference_is_the_documented_one(spans: dict[str, list[dict[str, Any]]]) -> None:
    contrib = [s for s in spans["contrib"] if s["kind"] == "SERVER"]
    ours = [s for s in spans["ours"] if s["kind"] == "SERVER"]
    assert all(
        re.fullmatch(r"127\.0\.0\.1:\d+", s["attributes"]["server.address"]) for s in contrib
    )
    assert all(s["attributes"]["server.address"] == "127.0.0.1" for s in ours)


def tier_spans(spans: list[Span]) -> list[dict[str, Any]]:
    """What must match between the modes: each span's name, kind, service, attribute keys and
    the values that do not vary from run to run, and its events' names."""
    varying = (".port", ".address", ".full", "_us", "_bps", "remote_seconds", ".snd_cwnd", ".lost")
    return sorted(
        (
            {
                "name": s.name,
                "kind": s.kind,
                "service": s.service,
                "attributes": {
                    key: "*" if key.endswith(varying) else value
                    for key, value in s.attributes.items()
                },
                "events": s.events,
            }
            for s in spans
        ),
        key=lambda span: (span["service"], span["kind"], span["name"]),
    )


def test_lean_tiers_trace_as_standard_tiers_do(tmp_path: Path, receiver: OtlpReceiver) -> None:
    # Both modes in one run, one fresh request (a new connection) through each.
    runs = {}
    for mode in ("standard", "lean"):
        (tmp_path / mode).mkdir()
        runs[mode], _ = one_trace(tmp_path / mode, receiver, TRACING_MODE=mode)
    standard, lean = (tier_spans(runs[mode]) for mode in ("standard", "lean"))
    assert len(standard) == 5
    assert {span["kind"] for span in standard} == {SERVER, CLIENT, INTERNAL}
    assert lean == standard
