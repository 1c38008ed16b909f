"""Item 4: the fault proxy with no faults vs direct: added p50 and throughput ratio over HTTP
(wrk to the API tier, untraced, no query delay), and the raw-socket figures of
tests/netgap/fault/bench.py."""

import statistics
from typing import Any

from bench.http import wrk
from bench.report import Figure
from bench.run import Run, wrk_dict


def proxy_cost(run: Run, direct_url: str, proxied_url: str) -> None:
    """wrk through the proxy and straight to its upstream, at load and serially, the order
    alternating round by round; the ratios within each round."""
    plan = run.plan
    run.say(f"fault proxy, no faults, vs direct: {plan.rounds} rounds ...")
    runs: list[dict[str, Any]] = []
    pairs: list[dict[str, float]] = []
    targets = {"direct": direct_url, "proxy": proxied_url}
    for i in range(plan.rounds):
        order = ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")
        got: dict[tuple[str, int], dict[str, Any]] = {}
        for connections in (plan.connections, 1):
            for via in order:
                with run.meter.measure() as usage:
                    result = wrk(targets[via], connections, plan.proxy_s, run.wrk_on_first)
                got[via, connections] = {
                    "round": i + 1,
                    "via": via,
                    **wrk_dict(result),
                    "other_cpu_s": round(usage.other_s, 2),
                }
        runs.extend(got.values())
        c = plan.connections
        pair = {
            "throughput_ratio": got["proxy", c]["rate"] / got["direct", c]["rate"],
            "added_p50_ms": got["proxy", 1]["p50_ms"] - got["direct", 1]["p50_ms"],
            "added_p50_ms_loaded": got["proxy", c]["p50_ms"] - got["direct", c]["p50_ms"],
        }
        pairs.append({k: round(v, 4) for k, v in pair.items()})
        run.say(
            f"  round {i + 1}: {got['proxy', c]['rate']:.0f} vs {got['direct', c]['rate']:.0f}"
            f" req/s ({pair['throughput_ratio']:.3f}), serial p50 "
            f"{got['proxy', 1]['p50_ms']:.3f} vs {got['direct', 1]['p50_ms']:.3f} ms"
        )
    run.rounds["proxy"] = {"runs": runs, "pairs": pairs}
    run.add(
        Figure(4, "proxy: added p50 (serial, HTTP to the API tier)",
               statistics.median(p["added_p50_ms"] for p in pairs), "ms", "<=", 0.1),
        Figure(4, f"proxy: throughput / direct ({plan.connections} connections)",
               statistics.median(p["throughput_ratio"] for p in pairs), "", ">=", 0.9),
        Figure(4, "  direct throughput (API tier, no delay, untraced)", statistics.median(
            r["rate"] for r in runs if r["via"] == "direct"
            and r["connections"] == plan.connections), "req/s"),
    )  # fmt: skip


def raw_proxy(run: Run) -> None:
    """tests/netgap/fault/bench.py's zero-fault figures: the proxy alone, raw sockets."""
    from tests.netgap.fault.bench import zero_fault  # a test helper: imported late

    added_s, ratio = zero_fault(max(1, min(run.plan.rounds, 3)))
    run.rounds["proxy_raw"] = {"added_p50_s": added_s, "bulk_ratio": ratio}
    run.add(
        Figure(4, "  proxy: added p50, raw 100 B round trip", added_s * 1000, "ms"),
        Figure(4, "  proxy: bulk upload throughput / direct, raw", ratio, ""),
    )
