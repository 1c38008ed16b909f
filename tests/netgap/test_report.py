"""netgap.report's diagnosis with the kernel's testimony: summaries built the way the breakdown
builds them (Chains into an Aggregate), compared as `--baseline` compares two windows."""

from typing import Any

from netgap.aggregate import Aggregate
from netgap.breakdown import REUSED
from netgap.collector.chains import Chain
from netgap.report import diagnosis, table

MS = 1_000_000


Testimony = tuple[int, int] | None  # (srtt ns, retransmissions) at one end of a call


def window(remote_ns: int, tcp: Testimony, n: int = 50, callee: Testimony = None) -> dict[str, Any]:
    chains = [
        Chain(f"{i:032x}", i * MS, 3 * MS + remote_ns, "webtier", "apitier",
              1 * MS, remote_ns, 2 * MS, REUSED, None, (), tcp, callee)
        for i in range(n)
    ]  # fmt: skip
    return Aggregate().add_all(chains).summary()


def test_a_rise_the_kernel_saw_is_the_network() -> None:
    said = diagnosis(window(1100 * MS, (1000 * MS, 1)), window(1 * MS, (40_000, 0)))
    assert "webtier->apitier remote +1.10 s at p50" in said
    assert (
        "the kernel agrees: srtt 0.040 ms -> 1.00 s at webtier's end, 1.00 retransmissions per "
        "request: delay and loss on the path between webtier and apitier, not in either app"
    ) in said


def test_both_ends_testify_and_their_resends_add_up() -> None:
    said = diagnosis(
        window(1100 * MS, (1000 * MS, 1), callee=(900 * MS, 2)),
        window(1 * MS, (40_000, 0), callee=(50_000, 0)),
    )
    assert (
        "the kernel agrees: srtt 0.040 ms -> 1.00 s at webtier's end; 0.050 ms -> 900.000 ms at "
        "apitier's end, 3.00 retransmissions per request: delay and loss"
    ) in said


def test_resends_alone_are_the_kernel_seeing_loss() -> None:
    said = diagnosis(window(300 * MS, (260_000, 1)), window(1 * MS, (250_000, 0)))
    assert (
        "the kernel agrees: srtt 0.250 ms -> 0.260 ms at webtier's end, 1.00 retransmissions"
    ) in said
    assert "delay and loss on the path between webtier and apitier" in said


def test_a_rise_only_the_callees_end_saw_lies_beyond_a_hop_ending_the_callers_connection() -> None:
    # The kernel-mode scenario without netem: the web tier's connection ends at the latency
    # proxy on loopback; the proxy's connection to the API crosses the shaped veth.
    said = diagnosis(
        window(900 * MS, (300_000, 0), callee=(200 * MS, 1)),
        window(1 * MS, (250_000, 0), callee=(300_000, 0)),
    )
    assert (
        "the kernel agrees at apitier's end (srtt 0.300 ms -> 200.000 ms at apitier's end, "
        "1.00 retransmissions per request) but not at webtier's (0.250 ms -> 0.300 ms): delay "
        "and loss on the network between webtier and apitier, beyond a hop that ends "
        "webtier's TCP connection (a proxy or sidecar), not in either app"
    ) in said


def test_a_rise_the_kernel_did_not_see_is_a_userspace_hop() -> None:
    said = diagnosis(
        window(40 * MS, (300_000, 0), callee=(280_000, 0)),
        window(1 * MS, (250_000, 0), callee=(260_000, 0)),
    )
    assert (
        "srtt on those connections did not follow (0.250 ms -> 0.300 ms at webtier's end; "
        "0.260 ms -> 0.280 ms at apitier's end)"
    ) in said
    assert "userspace hop" in said


def test_without_tcp_info_the_diagnosis_is_the_breakdowns_own() -> None:
    said = diagnosis(window(40 * MS, None), window(1 * MS, None))
    assert "the network path between webtier and apitier" in said
    assert "srtt" not in said


def test_the_table_shows_the_kernels_numbers_per_edge() -> None:
    summary = window(1 * MS, (250_000, 0), n=10, callee=(400_000, 2))
    report = {"service": "webtier", "source": "x", "start_ns": 0, "end_ns": 1, "summary": summary}
    text = table(report)
    assert (
        "kernel at webtier's end (TCP_INFO, 10 calls): srtt p50 0.250 ms, p99 0.250 ms; "
        "retransmissions per request 0.00"
    ) in text
    assert (
        "kernel at apitier's end (TCP_INFO, 10 calls): srtt p50 0.400 ms, p99 0.400 ms; "
        "retransmissions per request 2.00"
    ) in text
    assert summary["edges"]["webtier->apitier"]["tcp"]["calls"] == 10
    assert summary["edges"]["webtier->apitier"]["tcp_callee"]["calls"] == 10
