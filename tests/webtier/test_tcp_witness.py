"""The kernel's TCP_INFO on the web tier's CLIENT spans and the API tier's SERVER spans, from
real tiers on loopback: the connection's smoothed RTT and what it retransmitted during each
exchange; and through the
userspace fault proxy, remote time that rises by the injected latency while the srtt of the
web tier's connection (which ends at the proxy) does not: a delay TCP cannot see."""

from pathlib import Path

import httpx
import pytest

from netgap.address import Address
from netgap.fault.spec import Faults
from netgap.promtext import histogram
from tests.harness import OtlpReceiver, Span, Tier, api_tier, running, web_tier
from tests.netgap.fault.conftest import running_proxy
from tierkit import tcpinfo

N = 20
CLIENT = 3
SERVER = 2

pytestmark = pytest.mark.skipif(tcpinfo.TCP_INFO is None, reason="TCP_INFO is Linux's")


def calls(web: Tier, receiver: OtlpReceiver, n: int) -> list[Span]:
    before = sum(s.kind == CLIENT for s in receiver.snapshot())
    with httpx.Client(timeout=10) as client:
        assert {client.get(f"{web.url}/").status_code for _ in range(n)} == {200}
    spans = receiver.wait_for(lambda got: sum(s.kind == CLIENT for s in got) >= before + n)
    return sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_ns)[before:]


def test_each_client_span_carries_the_connections_tcp_info(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    # No query delay: the API acknowledges a request with its response (delayed ACK), so on
    # this connection srtt tends to the API's answer time; the path's own floor is min_rtt.
    with (
        running(api_tier(tmp_path, receiver, QUERY_DELAY_MS="0")) as api,
        running(web_tier(tmp_path, receiver, f"{api.url}/")) as web,
    ):
        spans = calls(web, receiver, N)
        exposition = httpx.get(f"{web.url}/metrics", timeout=5).text
    srtt = histogram(exposition, "netgap_tcp_srtt_seconds", {"edge": "webtier->apitier"})
    assert srtt.count == N
    assert "netgap_tcp_retransmits_total" in exposition
    tcp = [{k.removeprefix("netgap.tcp."): v for k, v in s.attributes.items() if "tcp." in k}
           for s in spans]  # fmt: skip
    assert [t["new_connection"] for t in tcp] == [True] + [False] * (N - 1)
    # Loopback: the path's floor is tens of us. srtt also carries how long the API takes to
    # answer (its answer acknowledges the request): well under 1 ms on an idle machine, more
    # when the API waits for a CPU, so it is bounded loosely here.
    assert all(t["min_rtt_us"] < 1000 for t in tcp), [t["min_rtt_us"] for t in tcp]
    assert all(0 < t["srtt_us"] < 50_000 for t in tcp), [t["srtt_us"] for t in tcp]
    assert all(t["retransmits"] == 0 and t["bytes_retransmitted"] == 0 for t in tcp)
    assert all(t["snd_cwnd"] >= 1 and t["rto_us"] >= 200_000 for t in tcp)
    assert all(t["min_rtt_us"] <= t["srtt_us"] + t["rttvar_us"] for t in tcp)
    # The other end testifies too: the API tier's SERVER span, on the same connection.
    servers = sorted(
        (s for s in receiver.snapshot() if s.kind == SERVER and s.service == "apitier"),
        key=lambda s: s.start_ns,
    )
    assert [s.attributes["netgap.tcp.new_connection"] for s in servers] == [True] + [False] * (
        N - 1
    )
    # Not 0 for every call: when an ACK comes later than Linux's tail-loss-probe timeout (about
    # 2 x srtt + 2 jiffies with segments in flight: a few ms on loopback, which a busy machine
    # can outlast), it sends a probe, and TCP_INFO counts that as a retransmission (seen once
    # in a full run on a slow day). A path that loses packets is the kernel test's.
    assert all(isinstance(s.attributes["netgap.tcp.retransmits"], int) for s in servers)
    assert sum(s.attributes["netgap.tcp.retransmits"] for s in servers) < N
    assert all(0 < s.attributes["netgap.tcp.srtt_us"] < 5000 for s in servers)
    # The web tier's own callers are no edge of the breakdown: it does not read their TCP_INFO.
    callers = [s for s in receiver.snapshot() if s.kind == SERVER and s.service == "webtier"]
    assert callers
    assert not any(k.startswith("netgap.tcp.") for s in callers for k in s.attributes)


def test_tcp_info_enabled_false_reads_none_on_either_tier(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    off = {"TCP_INFO_ENABLED": "false"}
    with (
        running(api_tier(tmp_path, receiver, **off)) as api,
        running(web_tier(tmp_path, receiver, f"{api.url}/", **off)) as web,
    ):
        spans = calls(web, receiver, 5)
        exposition = httpx.get(f"{web.url}/metrics", timeout=5).text
    servers = [s for s in receiver.snapshot() if s.kind == SERVER]
    assert len(spans) == 5
    assert len(servers) >= 10
    assert not any(k.startswith("netgap.tcp.") for s in spans + servers for k in s.attributes)
    assert histogram(exposition, "netgap_remote_seconds", {"edge": "webtier->apitier"}).count == 5
    assert histogram(exposition, "netgap_tcp_srtt_seconds", {"edge": "webtier->apitier"}).count == 0


def test_through_the_proxy_remote_time_rises_and_srtt_does_not(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    added_s = 0.02
    with (
        running(api_tier(tmp_path, receiver)) as api,
        running_proxy(Address("127.0.0.1", api.port), Faults(latency_s=added_s)) as proxy,
        running(web_tier(tmp_path, receiver, f"{proxy.address.url}/")) as web,
    ):
        spans = calls(web, receiver, N)
    remote = sorted(s.attributes["netgap.remote_seconds"] for s in spans)
    srtt = sorted(s.attributes["netgap.tcp.srtt_us"] for s in spans)
    assert remote[N // 2] >= 2 * added_s  # both directions
    # The connection ends at the proxy: none of the 20 ms each way is in it, and the answers,
    # later than the delayed-ACK time, leave the acknowledgements prompt (the path's own RTT).
    assert srtt[N // 2] < 1000, srtt
