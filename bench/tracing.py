"""Items 1 and 2: what tracing costs. Issue 16's five stacks side by side (the stock anchor,
untraced, standard, lean, standard at 10% sampling), the on/off pairs of issues 8 and 9 (and
a control pair of identical stacks), TCP_INFO switched in place inside one stack's tiers, its
cost alone (bench/tcpcost.py), and each lean piece's saving (bench/leancost.py).

Comparisons alternate their order round by round (A B, B A, ...), and each ratio is taken
within a round, then the median of the rounds is reported.
"""

import json
import statistics
import time
from typing import Any

from bench import leancost, stack, tcpcost
from bench.report import Figure
from bench.run import QUICK, Run

# what -> its title, the issue that asks for it and the throughput ratio it must keep (None:
# no target of its own; issue 9 asks that the traced/untraced targets hold with it)
ON_OFF: dict[str, tuple[str, str, float | None]] = {
    "metrics": ("metrics on/off", "issue 8", 0.97),
    "control": ("control: twin stacks a/b", "the noise floor", None),
}


def tracing_cost(run: Run, stacks: dict[str, stack.Tiers]) -> None:
    """Issue 16's five stacks side by side at load (the stock anchor, untraced, standard,
    lean, standard at 10% sampling), each round in a rotated order; ratios within each
    round. Serially, standard and untraced (item 2 and the floor's context)."""
    labels = list(stacks)
    run.say(f"{', '.join(labels)}: {run.plan.rounds} rounds ...")
    runs, pairs = _stack_rounds(run, stacks)
    run.rounds["tracing"] = {"runs": runs, "pairs": pairs}
    _stack_figures(run, labels, runs, pairs)


def _stack_rounds(
    run: Run, stacks: dict[str, stack.Tiers]
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Each round's wrk runs (at load, every stack; serial, standard and untraced) and its
    ratios between the stacks."""
    plan = run.plan
    labels = list(stacks)
    runs: list[dict[str, Any]] = []
    pairs: list[dict[str, float]] = []
    for i in range(plan.rounds):
        order = labels[i % len(labels) :] + labels[: i % len(labels)]
        loaded = {label: run.load(stacks[label], plan.connections, plan.load_s)
                  for label in order}  # fmt: skip
        serial = {label: run.load(stacks[label], 1, plan.serial_s)
                  for label in order if label in ("standard", "untraced")}  # fmt: skip
        runs.extend({"round": i + 1, "connections": plan.connections, **loaded[label]}
                    for label in labels)  # fmt: skip
        runs.extend({"round": i + 1, "connections": 1, **serial[label]} for label in serial)
        pair = _stack_ratios(loaded, serial)
        pairs.append({k: round(v, 4) for k, v in pair.items()})
        run.say(f"  round {i + 1}: " + ", ".join(
            f"{label} {loaded[label]['rate']:.0f} req/s {loaded[label]['cpu_s_per_1000']:.3f}"
            f" CPU-s/1000" for label in labels
        ))  # fmt: skip
    return runs, pairs


def _stack_figures(
    run: Run, labels: list[str], runs: list[dict[str, Any]], pairs: list[dict[str, float]]
) -> None:
    """The stacks' figures: medians of their runs, and of each round's ratios."""
    plan = run.plan

    def med(label: str, connections: int, key: str) -> float:
        return float(
            statistics.median(
                r[key] for r in runs if r["stack"] == label and r["connections"] == connections
            )
        )

    def ratio(key: str) -> float:
        return float(statistics.median(p[key] for p in pairs))

    c = plan.connections
    delay = plan.query_delay_ms
    run.traced_cpu_per_request_s = med("standard", c, "cpu_s_per_1000") / 1000
    run.stack_cpu_s = {label: med(label, c, "cpu_s_per_1000") / 1000 for label in labels}
    run.add(
        *(Figure(1, f"  {label}: throughput, {c} connections", med(label, c, "rate"),
                 "req/s") for label in labels),
        *(Figure(1, f"  {label}: CPU per 1000 requests, both tiers",
                 med(label, c, "cpu_s_per_1000"), "s") for label in labels),
        Figure(1, "standard/stock CPU per request", ratio("standard_stock_cpu"), "", "<=",
               0.45),
        Figure(1, "lean/stock CPU per request", ratio("lean_stock_cpu"), "", "<=", 0.3),
        Figure(1, f"standard/stock throughput, {c} connections",
               ratio("standard_stock_rate"), "", ">=", 2.5),
        Figure(1, "sampled 10%/untraced CPU per request", ratio("sampled_cpu"), "", "<=",
               1.15),
        Figure(1, f"sampled 10%/untraced throughput, {c} connections",
               ratio("sampled_rate"), "", ">=", 0.87),
        Figure(1, f"standard/untraced throughput, {c} connections",
               ratio("throughput_ratio"), ""),
        Figure(1, "standard/untraced CPU per request", ratio("cpu_ratio"), ""),
        Figure(1, "  standard/untraced CPU per request (serial)",
               ratio("serial_cpu_ratio"), ""),
        Figure(1, "lean/standard CPU per request", ratio("lean_standard_cpu"), ""),
        Figure(1, "serial p50 standard", med("standard", 1, "p50_ms"), "ms"),
        Figure(1, "serial p99 standard", med("standard", 1, "p99_ms"), "ms"),
        Figure(1, "serial p50 untraced", med("untraced", 1, "p50_ms"), "ms"),
        Figure(1, "serial p99 untraced", med("untraced", 1, "p99_ms"), "ms"),
        Figure(2, f"serial standard p50 - QUERY_DELAY_MS ({delay:g} ms)",
               med("standard", 1, "p50_ms") - delay, "ms"),
    )  # fmt: skip


def on_off_cost(run: Run, what: str, on: stack.Tiers, off: stack.Tiers) -> None:
    """Issue 8's and 9's: throughput and CPU per request with a feature on vs off, both
    stacks traced and fresh, `what` naming the feature (ON_OFF)."""
    plan = run.plan
    title, issue, target = ON_OFF[what]
    # Many rounds at a third of the length (a full run: three times its other rounds; a
    # quick one, a smoke run, two): a difference of a few percent needs
    # many pairs close together in time, as this machine's CPU speed drifts by tens of
    # percent in minutes (rounds of one run ranged 0.90-1.08 for the same code).
    rounds, seconds = plan.on_off_rounds, max(1.0, plan.load_s / 3)
    run.say(f"{title} (both traced): {rounds} rounds of {seconds:g} s ...")
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for i in range(rounds):
        order = (on, off) if i % 2 == 0 else (off, on)
        loaded = {t.label: run.load(t, plan.connections, seconds) for t in order}
        runs.extend({"round": i + 1, **loaded[t.label]} for t in (on, off))
        a, b = loaded[on.label], loaded[off.label]
        ratios.append(round(a["rate"] / b["rate"], 4))
        cpu_ratios.append(round(a["cpu_s_per_1000"] / b["cpu_s_per_1000"], 4))
        run.say(
            f"  round {i + 1}: {a['rate']:.0f} vs {b['rate']:.0f} req/s "
            f"({ratios[-1]:.3f}), CPU/request {cpu_ratios[-1]:.3f}"
        )
    run.rounds[what] = {
        "on": on.label, "off": off.label, "runs": runs, "ratios": ratios,
        "cpu_ratios": cpu_ratios,
    }  # fmt: skip
    run.add(
        Figure(1, f"{title} throughput, traced, {plan.connections} conn. ({issue})",
               statistics.median(ratios), "", ">=" if target else None, target),
        Figure(1, f"  {title} CPU per request, both tiers",
               statistics.median(cpu_ratios), ""),
    )  # fmt: skip


def tcp_info_in_place(run: Run, toggled: stack.Tiers) -> None:
    """Issue 9's in place: CPU per request of each tier of one loaded stack, in the windows
    TCP_INFO was on less those it was off (bench/toggle); as the noise beside it, the same
    split between alternate windows of one state (an A/A)."""
    seconds = run.plan.in_place_s
    run.say(f"TCP_INFO in place: {seconds:g} s on a stack switching it every ~0.5 s ...")
    started = time.time()
    loaded = run.load(toggled, run.plan.connections, seconds)
    ended = time.time()
    time.sleep(1.0)  # the last window is written
    found: dict[str, dict[str, float]] = {}
    for proc in (toggled.web, toggled.api):
        windows = [
            w for w in json.loads((run.toggles / f"{proc.pid}.json").read_text())
            if started + 1.0 <= w["at"] <= ended and w["requests"]
        ]  # fmt: skip
        found[proc.name] = _switched_cost(windows)
    run.rounds["tcp_info_in_place"] = {"run": loaded, "tiers": found}
    run.say("  " + "; ".join(
        f"{name}: {f['cost_us']:.1f} us/request (A/A {f['aa_us']:.1f})"
        for name, f in found.items()
    ))  # fmt: skip
    total = sum(f["cost_us"] for f in found.values())
    noise = sum(f["aa_us"] for f in found.values())
    run.add(
        Figure(1, "  TCP_INFO in place, per request, both tiers (issue 9)", total, "us"),
        Figure(1, "    its share of the stack's CPU per request",
               100 * total / (loaded["cpu_s_per_1000"] * 1000), "%"),
        Figure(1, "    the same split with no switch (A/A: the noise)", noise, "us"),
    )  # fmt: skip


def tcp_info_cost(run: Run) -> None:
    """Issue 9's: what the kernel's testimony adds to a request, both ends, in full (bench/
    tcpcost.py), and its share of a traced request's CPU measured above."""
    cost = tcpcost.measure(run.plan.rounds)
    if cost is None:
        run.notes.append("TCP_INFO cost: not measured (no TCP_INFO off Linux)")
        return
    run.rounds["tcp_info_ns"] = cost.blocks
    run.add(
        Figure(1, "  TCP_INFO per request, in full (both ends; issue 9)", cost.total_ns, "ns"),
        Figure(1, "    read: getsockopt + parse, per end", cost.read_ns / 2, "ns"),
        Figure(1, "    ten span attributes (SDK set_attributes), per end",
               cost.attributes_ns / 2, "ns"),
        Figure(1, "    their OTLP encoding, per end", cost.encode_ns / 2, "ns"),
        Figure(1, "    srtt and retransmission metrics (web tier)", cost.metrics_ns, "ns"),
    )  # fmt: skip
    if run.traced_cpu_per_request_s:
        share = cost.total_ns / (run.traced_cpu_per_request_s * 1e9)
        run.add(Figure(1, "    its share of a traced request's CPU", 100 * share, "%"))


def lean_pieces(run: Run) -> None:
    """Issue 16: what each lean piece saves of a traced (standard) request's CPU; a piece
    under 5% is to be deleted. The encoder alone (bench/leancost.py); the spans (and the
    head stamp they start from) as the rest of lean's saving against standard."""
    run.say("lean mode's encoder alone ...")
    cost = leancost.measure(requests=256 if run.plan is QUICK else 2048)
    standard = run.stack_cpu_s.get("standard", 0.0) * 1e9
    lean = run.stack_cpu_s.get("lean", 0.0) * 1e9
    if not standard:
        return
    encoder_share = 100 * cost.saved_ns / standard
    spans_share = 100 * ((standard - lean) - cost.saved_ns) / standard
    run.rounds["lean_pieces"] = {
        "sdk_encode_ns": cost.sdk_ns, "lean_encode_ns": cost.lean_ns,
        "standard_ns": standard, "lean_ns": lean,
    }  # fmt: skip
    run.add(
        Figure(1, "lean encoder: saving per request, % of a standard request's CPU",
               encoder_share, "%", ">=", 5),
        Figure(1, "  OTLP encoding per request (5 spans), SDK vs lean",
               cost.sdk_ns / 1000, "us", note=f"lean {cost.lean_ns / 1000:.1f} us"),
        Figure(1, "lean spans + head stamp: saving, % of a standard request's CPU",
               spans_share, "%", ">=", 5),
    )  # fmt: skip


def _stack_ratios(
    loaded: dict[str, dict[str, Any]], serial: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """One round's ratios between the five stacks (issue 16's targets, and the old
    traced/untraced ones kept for reference)."""

    def cpu(label: str) -> float:
        return float(loaded[label]["cpu_s_per_1000"])

    def rate(label: str) -> float:
        return float(loaded[label]["rate"])

    return {
        "standard_stock_cpu": cpu("standard") / cpu("stock"),
        "lean_stock_cpu": cpu("lean") / cpu("stock"),
        "standard_stock_rate": rate("standard") / rate("stock"),
        "sampled_cpu": cpu("sampled") / cpu("untraced"),
        "sampled_rate": rate("sampled") / rate("untraced"),
        "throughput_ratio": rate("standard") / rate("untraced"),
        "cpu_ratio": cpu("standard") / cpu("untraced"),
        "lean_standard_cpu": cpu("lean") / cpu("standard"),
        "serial_cpu_ratio": serial["standard"]["cpu_s_per_1000"]
        / serial["untraced"]["cpu_s_per_1000"],
    }


def _switched_cost(windows: list[dict[str, Any]]) -> dict[str, float]:
    """us of CPU per request with the feature on less off; and, as the noise beside it, the
    larger of (alternate on-windows) and (alternate off-windows) told apart the same way."""

    def per_request_us(group: list[dict[str, Any]]) -> float:
        requests = sum(int(w["requests"]) for w in group)
        return 1e6 * sum(float(w["cpu_s"]) for w in group) / max(requests, 1)

    on = [w for w in windows if w["on"]]
    off = [w for w in windows if not w["on"]]
    aa = max(abs(per_request_us(group[::2]) - per_request_us(group[1::2])) for group in (on, off))
    return {
        "cost_us": per_request_us(on) - per_request_us(off),
        "aa_us": aa,
        "on_us": per_request_us(on),
        "off_us": per_request_us(off),
        "windows": len(windows),
    }
