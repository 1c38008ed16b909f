"""The story's fault under load (issue 7, item 3): `netgap fault proxy --preset article` (500 ms
each way, 50 kbit/s, 1% loss) between the web tier and the API, `netgap load` on the web tier.

- The web tier's /healthz keeps a p99 under 50 ms: its health is not hostage to the API.
- Its outbound calls in flight never exceed its pool (API_MAX_CONNECTIONS), counted as the
  kernel's open sockets to the proxy, not as the pool believes; the fault fills the pool.
- Requests past API_TIMEOUT_S fail fast with 504 instead of piling up behind the fault.
- Once the fault is cleared (`netgap fault clear`), every new request is served again, with no
  restart.

API_TIMEOUT_S and the pool are set small so that the fault drives requests past both within
seconds; the defaults (5 s, 100) would take the story's full minute.
"""

import time
from pathlib import Path

import pytest

from netgap.address import Address
from tests.harness import OtlpReceiver, api_tier, running, web_tier
from tests.netgap.commands.processes import fault_proxy, netgap
from tests.survival.lab import ConnectionCount, netgap_load, pid_of, served

pytestmark = pytest.mark.timeout(90)

API_TIMEOUT_S = 2.0
POOL = 8  # API_MAX_CONNECTIONS: ~1.1 s an exchange under the fault, so ~7 calls/s get through
RATE = 30  # requests/s to the page, the story's load: well past what the pool lets through
HEALTH_RATE = 20  # requests/s to /healthz, alongside
HEALTH_P99_MS = 50.0
FAULT_S = 8.0
AFTER_S = 3.0
# The web tier's own work around the timeout (its error page, its log line), and on the
# client's side, the loopback hop and netgap load's scheduling as well.
SERVER_SLACK_S = 0.2
CLIENT_SLACK_S = 0.5


def test_article_fault_under_load(tmp_path: Path, receiver: OtlpReceiver) -> None:
    api = api_tier(tmp_path, receiver)
    with (
        running(api),
        fault_proxy(Address("127.0.0.1", api.port), "--preset", "article") as proxy,
    ):
        assert proxy.faults.startswith("latency 500ms"), proxy.faults
        web = web_tier(
            tmp_path,
            receiver,
            f"{proxy.address.url}/",
            API_TIMEOUT_S=f"{API_TIMEOUT_S:g}",
            API_MAX_CONNECTIONS=str(POOL),
        )
        with running(web), ConnectionCount(proxy.address.port, pid_of(web)) as outbound:
            with (
                netgap_load(f"{web.url}/healthz", HEALTH_RATE, API_TIMEOUT_S) as health,
                netgap_load(f"{web.url}/", RATE, 5 * API_TIMEOUT_S) as pages,
            ):
                time.sleep(FAULT_S)
                cleared = netgap("fault", "clear", "--control", proxy.control_url)
                assert cleared.returncode == 0, cleared.stderr
                cleared_at = time.time()
                time.sleep(AFTER_S)
                page_summary = pages.stop()
                health_summary = health.stop()
            assert web.proc is not None
            assert web.proc.poll() is None  # the same process all along: never restarted
            log = served(web)

    assert outbound.most <= POOL, (
        f"{outbound.most} connections open to the API ({dict(outbound.at_most)}), pool {POOL}"
    )
    assert outbound.most == POOL, "the fault never filled the pool: the bound went untested"

    timed_out = [r for r in log if r.status == 504]
    assert timed_out, "no request went past API_TIMEOUT_S"
    assert {r.status for r in log} <= {200, 504}
    slowest = max(r.duration_s for r in log)
    assert slowest < API_TIMEOUT_S + SERVER_SLACK_S, f"a request took {slowest:.3f} s"
    assert set(page_summary["errors_by_kind"]) <= {"5xx"}, page_summary["errors_by_kind"]
    client_max_ms = page_summary["latency_ms"]["max"]
    assert client_max_ms < (API_TIMEOUT_S + CLIENT_SLACK_S) * 1000, page_summary["latency_ms"]

    after = [r for r in log if r.start >= cleared_at]
    assert len(after) >= RATE * AFTER_S / 2
    still_failing = [r for r in after if r.status != 200]
    assert not still_failing, (
        f"{len(still_failing)} of {len(after)} after the clear, e.g. {still_failing[0]}"
    )

    health_p99 = health_summary["latency_ms"]["p99"]
    assert health_summary["errors"] == 0, health_summary["errors_by_kind"]
    assert health_p99 < HEALTH_P99_MS, health_summary["latency_ms"]

    first_ok = min(r.end for r in log if r.status == 200 and r.end >= cleared_at) - cleared_at
    last_504 = max(r.end for r in timed_out) - cleared_at
    print(
        f"\npages: sent {page_summary['sent']}, 200 {len(log) - len(timed_out)},"
        f" 504 {len(timed_out)}, slowest {slowest:.3f} s (client {client_max_ms:.0f} ms);"
        f" healthz: sent {health_summary['sent']}, p99 {health_p99:.2f} ms;"
        f" connections to the API at most {outbound.most} of {POOL}"
        f" ({outbound.samples} samples); after the clear: first 200 {first_ok:+.3f} s,"
        f" last 504 {last_504:+.3f} s, {len(after)} new requests all 200"
    )
