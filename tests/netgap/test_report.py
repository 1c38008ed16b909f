"""netgap.report's diagnosis with the kernel's testimony: summaries built the way the breakdown
builds them (Chains into an Aggregate), compared as `--baseline` compares two windows."""

from typing import Any

from netgap.aggregate import Aggregate
from netgap.breakdown import REUSED, Chain
from netgap.report import diagnosis, table

MS = 1_000_000


def window(remote_ns: int, tcp: tuple[int, int] | None, n: int = 50) -> dict[str, Any]:
    chains = [
        Chain(f"{i:032x}", i * MS, 3 * MS + remote_ns, "webtier", "apitier",
              1 * MS, remote_ns, 2 * MS, REUSED, None, (), tcp)
        for i in range(n)
    ]  # fmt: skip
    return Aggregate().add_all(chains).summary()


def test_a_rise_the_kernel_saw_is_the_network() -> None:
    said = diagnosis(window(1100 * MS, (1000 * MS, 1)), window(1 * MS, (40_000, 0)))
    assert "webtier->apitier remote +1.10 s at p50" in said
    assert (
        "the kernel agrees: srtt 0.040 ms -> 1.00 s, 1.00 retransmissions per request: "
        "delay and loss on the path between webtier and apitier, not in either app"
    ) in said


def test_a_rise_the_kernel_did_not_see_is_a_userspace_hop() -> None:
    said = diagnosis(window(40 * MS, (300_000, 0)), window(1 * MS, (250_000, 0)))
    assert "srtt on those connections did not follow (0.300 ms, was 0.250 ms)" in said
    assert "userspace hop" in said


def test_without_tcp_info_the_diagnosis_is_the_breakdowns_own() -> None:
    said = diagnosis(window(40 * MS, None), window(1 * MS, None))
    assert "the network path between webtier and apitier" in said
    assert "srtt" not in said


def test_the_table_shows_the_kernels_numbers_per_edge() -> None:
    summary = window(1 * MS, (250_000, 0), n=10)
    report = {"service": "webtier", "source": "x", "start_ns": 0, "end_ns": 1, "summary": summary}
    text = table(report)
    assert "kernel (TCP_INFO, 10 calls): srtt p50 0.250 ms, p99 0.250 ms" in text
    assert "retransmissions per request 0.00" in text
    assert summary["edges"]["webtier->apitier"]["tcp"]["calls"] == 10
