"""The kernel as a witness, on a real path: the web tier in one network namespace, the API tier
in another, joined by a veth (tests/netgap/fault/netns.py). Unshaped, the spans' srtt is under
a millisecond with no retransmissions; with tbf on both veth ends (a low rate, a small burst and
a queue small enough to drop; this kernel has tbf but no netem) and load whose bytes exceed the
rate, srtt rises at least tenfold and retransmissions appear. Spans go to each tier's stdout
(the console exporter): no collector reaches into the namespaces. Root only; skips otherwise."""

import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT
from tests.netgap.fault.netns import LEFT_DEV, RIGHT_DEV, RIGHT_IP, Pair, missing, netns_pair

RATE = "200kbit"
BURST, LIMIT = 1600, 4000  # bytes: small packets queue too, and a full queue drops
LOAD_RATE, LOAD_S = 100, 4  # ~100 exchanges of ~700 B a second: ~3x what 200 kbit/s carries


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with netns_pair() as made:
        yield made


@dataclass
class Tier:
    proc: "subprocess.Popen[bytes]"
    stdout: Path
    stderr: Path


@contextmanager
def tier(pair: Pair, netns: str, module: str, logs: Path, **env: str) -> Iterator[Tier]:
    stdout, stderr = logs / f"{module}.out", logs / f"{module}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "env", *(f"{k}={v}" for k, v in env.items()),
             sys.executable, "-m", module],
            stdout=out, stderr=err, cwd=ROOT,
        )  # fmt: skip
    try:
        for _ in range(200):  # bounded: 20 s to start
            if b"Application startup complete" in stderr.read_bytes():
                break
            assert proc.poll() is None, stderr.read_text()
            time.sleep(0.1)
        else:
            raise AssertionError(f"{module} did not start:\n{stderr.read_text()}")
        yield Tier(proc, stdout, stderr)
    finally:
        proc.terminate()
        proc.wait(20)


def load(pair: Pair, url: str) -> dict[str, Any]:
    done = pair.run(
        pair.left,
        [sys.executable, "-m", "netgap", "load", url, "--rate", str(LOAD_RATE),
         "--duration", f"{LOAD_S}s", "--timeout", "8s", "--json"],
        check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def spans(tier: Tier, kind: str) -> list[dict[str, Any]]:
    found = []
    for line in tier.stdout.read_text().splitlines():
        if line.startswith("{"):
            span = json.loads(line)
            if span["kind"] == f"SpanKind.{kind}" and "netgap.tcp.srtt_us" in span["attributes"]:
                found.append(span)
    return found


def resent(span: dict[str, Any]) -> int:
    count: int = span["attributes"]["netgap.tcp.retransmits"]
    return count


def started(span: dict[str, Any]) -> int:
    return int(dt.datetime.fromisoformat(span["start_time"]).timestamp() * 1e9)


def test_shaping_the_path_shows_in_srtt_and_retransmissions(pair: Pair, tmp_path: Path) -> None:
    before = {netns: pair.state(netns) for netns in (pair.left, pair.right)}
    common = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    # QUERY_DELAY_MS=0: the API acknowledges each request with its answer, so with a delay
    # srtt would carry it; without, srtt is the path's (README: reading srtt)
    with (
        tier(pair, pair.right, "apitier", tmp_path, HOST=RIGHT_IP, PORT="8801",
             QUERY_DELAY_MS="0", **common) as api,
        tier(pair, pair.left, "webtier", tmp_path, HOST="127.0.0.1", PORT="8800",
             API_URL=f"http://{RIGHT_IP}:8801/", API_TIMEOUT_S="10", **common) as web,
    ):  # fmt: skip
        url = "http://127.0.0.1:8800/"
        calm = load(pair, url)
        shaped_ns = time.time_ns()
        for netns, dev in ((pair.left, LEFT_DEV), (pair.right, RIGHT_DEV)):
            pair.run(netns, ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE,
                             "burst", str(BURST), "limit", str(LIMIT)])  # fmt: skip
        try:
            shaped = load(pair, url)
            drops = pair.run(pair.left, ["tc", "-s", "qdisc", "show", "dev", LEFT_DEV]).stdout
        finally:
            for netns, dev in ((pair.left, LEFT_DEV), (pair.right, RIGHT_DEV)):
                pair.run(netns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        time.sleep(0.5)  # the last batches of spans
    clients, servers = spans(web, "CLIENT"), spans(api, "SERVER")
    calm_srtt = [s["attributes"]["netgap.tcp.srtt_us"] for s in clients if started(s) < shaped_ns]
    shaped_srtt = [
        s["attributes"]["netgap.tcp.srtt_us"] for s in clients if started(s) >= shaped_ns
    ]
    retransmits = {
        side: sum(resent(s) for s in found if started(s) >= shaped_ns)
        for side, found in (("requests (web tier)", clients), ("responses (API tier)", servers))
    }
    calm_p50, shaped_p50 = statistics.median(calm_srtt), statistics.median(shaped_srtt)
    # What the queue can add: LIMIT bytes waiting at RATE.
    print(
        f"\nsrtt p50 unshaped {calm_p50} us, shaped {shaped_p50} us "
        f"(x{shaped_p50 / calm_p50:.0f}); "
        f"a full tbf queue waits {LIMIT * 8 / 200_000 * 1e3:.0f} ms; retransmitted: {retransmits}; "
        f"load: calm ok {calm['ok']}/{calm['sent']}, shaped ok {shaped['ok']}/{shaped['sent']}\n"
        f"{drops}"
    )
    assert calm["ok"] == calm["sent"]
    # Under 1 ms on an idle machine (0.47-0.77 ms here); srtt carries how long the API takes
    # to answer (its answer acknowledges the request), which CPU contention stretches.
    assert calm_p50 < 2000
    assert not any(
        s["attributes"]["netgap.tcp.retransmits"] for s in clients if started(s) < shaped_ns
    )
    assert shaped_p50 >= 10 * calm_p50
    assert sum(retransmits.values()) > 0
    assert {netns: pair.state(netns) for netns in (pair.left, pair.right)} == before
