"""tierkit.tracing emits the spans opentelemetry-instrumentation-fastapi/-httpx do under the
stable HTTP conventions: the same requests through both (tests/tierkit/conformance.py, on a real
socket) give the same names, kinds, statuses, parents and attributes, but for the documented
difference (`server.address` without the port) and the ports of two different servers."""

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.harness import ROOT

PORT = re.compile(r"(?<=:)\d+|^\d+$")


@pytest.fixture(scope="module")
def spans() -> dict[str, list[dict[str, Any]]]:
    env = {**os.environ, "OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.tierkit.conformance"],
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
