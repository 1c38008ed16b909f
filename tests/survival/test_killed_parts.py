"""Killed parts under load (issue 7, item 2): `netgap load` drives the web tier while a part dies.

- The API killed (SIGKILL): the web tier answers 502 at once, not after its timeout, and serves
  200 again within 1 s of the API's restart, with no restart of its own.
- The collector killed: both tiers keep serving with no errors, and their memory stays bounded
  while no span can be exported.
- SIGTERM to either tier under load: not one request it accepted fails, and every span of every
  request that completed reaches the collector (tests/tierkit/test_serve.py checks one burst of
  requests in flight; here the load keeps coming through the stop).

Real processes on loopback: the tiers, `netgap load`, `netgap collect`; times are wall clock.
"""

import signal
import time
from math import inf
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    CLIENT,
    SERVER,
    OtlpReceiver,
    Span,
    Tier,
    api_tier,
    running,
    web_tier,
)
from tests.netgap.commands.processes import collect
from tests.survival.lab import Served, log_messages, netgap_load, rss_mb, served

pytestmark = pytest.mark.timeout(90)

RATE = 50  # requests/s: a few in flight at any moment, and light on two cores
AT_ONCE_S = 1.0  # a 502 "at once": well under API_TIMEOUT_S (5 s)
RECOVERY_S = 1.0  # the bound from the API's restart to the web tier's first 200
LOAD_TIMEOUT_S = 10.0  # netgap load's own per-request limit: past the web tier's 5 s

# The collector's outage: long enough that the spans it cannot take outnumber a full queue.
OUTAGE_S = 8.0
COLLECTOR_RATE = 100
# While the first export after the kill retries, spans wait in the batch processor's queue: its
# bound is what bounds memory. At the default 2048 (~7 MB of spans) the outage would have to be
# long to tell a bound from none; at 256 (the export batch must not be larger) a full queue is
# ~1 MB (~3.6 kB a span), and an unbounded one grows ~6-7 MB a tier over the outage.
QUEUE_SPANS = 256
RSS_GROWTH_MB = 4.0  # generous: four full queues

QUERY_DELAY_MS = 200  # each request spends this in the API: ~10 in flight at 50/s


def test_api_killed_gives_502_at_once_and_recovers_within_1_s(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    api = api_tier(tmp_path, receiver)
    restarted = api_tier(tmp_path, receiver, PORT=str(api.port))
    api.start()
    try:
        with running(web_tier(tmp_path, receiver, f"{api.url}/")) as web:
            with netgap_load(f"{web.url}/", RATE, LOAD_TIMEOUT_S) as load:
                time.sleep(1.0)
                killed_at = kill(api)
                time.sleep(1.0)  # the web tier alone, its API gone
                restarted.start()
                back_at = time.time()
                time.sleep(2 * RECOVERY_S)  # a recovery slower than the bound shows as a number
                summary = load.stop()
            assert web.proc is not None
            assert web.proc.poll() is None  # the same process all along: never restarted
            log = served(web)
    finally:
        kill(api)
        restarted.stop()
    # No request waited on the dead API: as the client saw it, from each request's scheduled
    # time (no coordinated omission), and as the web tier logged its 502s.
    assert summary["latency_ms"]["max"] < AT_ONCE_S * 1000, summary["latency_ms"]
    failed = [r for r in log if r.status != 200]
    assert failed, "no request failed while the API was down"
    assert {r.status for r in failed} == {502}
    assert min(r.end for r in failed) >= killed_at
    slowest_502 = max(r.duration_s for r in failed)
    assert slowest_502 < AT_ONCE_S, f"a 502 took {slowest_502:.3f} s"
    assert summary["errors_by_kind"] == {"5xx": len(failed)}
    assert summary["ok"] + len(failed) == summary["sent"]
    first_ok = min((r.end for r in log if r.status == 200 and r.start > killed_at), default=inf)
    recovered_in = first_ok - back_at
    last_failure = max(r.end for r in failed) - back_at
    assert recovered_in < RECOVERY_S, f"first 200 {recovered_in:.3f} s after the API was back"
    assert last_failure < RECOVERY_S, f"a 502 still {last_failure:.3f} s after the API was back"
    print(
        f"\nsent {summary['sent']}, 502 {len(failed)}, slowest 502 {slowest_502 * 1000:.1f} ms,"
        f" client max {summary['latency_ms']['max']:.1f} ms, first 200 {recovered_in:+.3f} s"
        f" and last 502 {last_failure:+.3f} s from the API's restart"
    )


def kill(tier: Tier) -> float:
    """SIGKILL, as the OOM killer or a node loss does: no graceful anything. The time just
    before: whatever failed, failed after it, and what started after it met no API."""
    killed_at = time.time()
    if tier.proc is not None and tier.proc.poll() is None:
        tier.proc.kill()
        tier.proc.wait(10)
    return killed_at


def test_collector_killed_tiers_keep_serving_in_bounded_memory(tmp_path: Path) -> None:
    with collect(tmp_path / "traces.db") as (collector, urls, _):
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": urls["otlp/http"],
            "OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE_SPANS),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(QUEUE_SPANS // 2),
        }
        api = api_tier(tmp_path, None, **env)
        with running(api), running(web_tier(tmp_path, None, f"{api.url}/", **env)) as web:
            with netgap_load(f"{web.url}/", COLLECTOR_RATE, LOAD_TIMEOUT_S) as load:
                wait_for_services(urls["query"], {"webtier", "apitier"})
                time.sleep(1.0)
                before = {tier.module: rss_mb(tier) for tier in (web, api)}
                collector.kill()
                collector.wait(10)
                time.sleep(OUTAGE_S)
                after = {tier.module: rss_mb(tier) for tier in (web, api)}
                summary = load.stop()
            # Each tier noticed, once (so the spans really had nowhere to go).
            for tier in (web, api):
                assert len(log_messages(tier, "dropping spans until it recovers")) == 1, tier.logs()
    assert summary["errors"] == 0, summary["errors_by_kind"]
    assert summary["ok"] == summary["sent"] >= COLLECTOR_RATE * OUTAGE_S
    growth = {name: after[name] - before[name] for name in before}
    print(
        f"\nsent {summary['sent']}, errors {summary['errors']}, p99"
        f" {summary['latency_ms']['p99']:.1f} ms; RSS MB before -> after the {OUTAGE_S:g} s"
        " outage: "
        + ", ".join(f"{name} {before[name]:.1f} -> {after[name]:.1f}" for name in before)
    )
    assert all(mb < RSS_GROWTH_MB for mb in growth.values()), growth


def wait_for_services(query_url: str, services: set[str], timeout_s: float = 10.0) -> None:
    """Until the collector has stored spans of `services`: traces flow before it is killed."""
    deadline = time.monotonic() + timeout_s
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = set(httpx.get(f"{query_url}services", timeout=5).json()["services"])
        if found >= services:
            return
        time.sleep(0.1)
    raise AssertionError(f"the collector has spans of {found} only")


@pytest.mark.parametrize("victim", ["webtier", "apitier"])
def test_sigterm_under_load_fails_no_accepted_request_and_loses_no_span(
    tmp_path: Path, receiver: OtlpReceiver, victim: str
) -> None:
    api = api_tier(tmp_path, receiver, QUERY_DELAY_MS=str(QUERY_DELAY_MS))
    with running(api), running(web_tier(tmp_path, receiver, f"{api.url}/")) as web:
        stopped = web if victim == "webtier" else api
        with netgap_load(f"{web.url}/", RATE, LOAD_TIMEOUT_S) as load:
            time.sleep(1.0)
            signalled_at = time.time()
            stopped.signal(signal.SIGTERM)
            assert stopped.proc is not None
            exit_code = stopped.proc.wait(20)
            time.sleep(0.5)  # the load goes on against what is left
            summary = load.stop()
    # Both tiers have stopped now, so both have flushed.
    assert exit_code == 0, stopped.logs()
    accepted = served(stopped)
    in_flight = [r for r in accepted if r.start < signalled_at < r.end]
    assert in_flight, "no request was in flight at the SIGTERM"
    assert {r.status for r in accepted} == {200}
    pages = served(web)
    answered = [r for r in pages if r.status == 200]
    refused = [r for r in pages if r.status != 200]
    assert summary["ok"] == len(answered)
    if victim == "webtier":
        # What failed was never accepted: refused connections, after the listener closed.
        assert not refused
        assert set(summary["errors_by_kind"]) == {"connect"}, summary["errors_by_kind"]
    else:
        # The web tier answers for the API, which refused the calls it never accepted.
        assert len(answered) == len(accepted)
        assert refused
        assert all(r.status == 502 and "ConnectError" in str(r.error) for r in refused)
        assert summary["errors_by_kind"] == {"5xx": len(refused)}
    expected = 5 * len(answered) + 2 * len(refused)
    spans = receiver.wait_for(lambda s: len(s) >= expected, timeout_s=10)
    assert_every_span_arrived(spans, answered, refused)
    print(
        f"\n{victim} stopped: sent {summary['sent']}, errors {summary['errors_by_kind']},"
        f" {len(in_flight)} in flight at the SIGTERM, {len(answered)} answered 200,"
        f" spans {len(spans)} of {expected}"
    )


def assert_every_span_arrived(
    spans: list[Span], answered: list[Served], refused: list[Served]
) -> None:
    """Five spans for each page served, two (its SERVER and CLIENT) for each 502; no more."""
    by_trace: dict[str, list[Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    for request in answered:
        kinds = sorted((s.service, s.kind) for s in by_trace.get(request.trace_id, []))
        assert len(kinds) == 5, (request, kinds)
        assert ("apitier", SERVER) in kinds
        assert ("webtier", CLIENT) in kinds
    for request in refused:
        assert len(by_trace.get(request.trace_id, [])) == 2, request
    assert len(spans) == 5 * len(answered) + 2 * len(refused)
