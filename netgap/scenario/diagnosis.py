"""The scenario's diagnosis in words: what moved in the fault, whether it came back, why it
got that big (the model's biggest term), and why the kernel's curves show the fault or not."""

from netgap.report import diagnosis as breakdown_diagnosis
from netgap.report import end_moved
from netgap.scenario.result import ENDS, PARTS, ModelInputs, PhaseResult, ScenarioResult
from netgap.scenario.text import duration, seconds

# A self time that moves less than this (or 25%) has not moved: the acceptance's 1 ms.
APP_NOISE_NS = 1_000_000


def diagnose(result: ScenarioResult) -> str:
    """What moved in the fault, whether it came back, and why it got that big: paragraphs
    separated by blank lines."""
    baseline, fault = result.phase("baseline"), result.phase("fault")
    if baseline is None or fault is None or not baseline.traces or not fault.traces:
        return "Not enough traces to compare the fault with the baseline."
    paragraphs = [
        _what_moved(baseline, fault, result.faults_text)
        + " In the breakdown's terms: "
        + breakdown_diagnosis(_summary(fault), _summary(baseline))
        + "."
    ]
    recovery = result.phase("recovery")
    if recovery is not None:
        paragraphs.append(_recovery(baseline, recovery))
    if result.model is not None:
        paragraphs.append(_amplification(fault, result.model))
    return "\n\n".join(paragraphs)


def _summary(phase: PhaseResult) -> dict[str, object]:
    """The phase as the breakdown's diagnosis reads a window."""
    return {"components": phase.components, "edges": phase.edges}


def _what_moved(baseline: PhaseResult, fault: PhaseResult, faults_text: str) -> str:
    before, during = baseline.stat("remote", "p50"), fault.stat("remote", "p50")
    flat: list[str] = []
    moved: list[str] = []
    for part, label in PARTS:
        a, b = baseline.stat(part, "p50"), fault.stat(part, "p50")
        if part == "remote" or a is None or b is None:
            continue
        change = f"{label} {duration(a)} -> {duration(b)}"
        (moved if abs(b - a) > max(APP_NOISE_NS, 0.25 * a) else flat).append(change)
    text = (
        f"Under the fault ({faults_text}) the remote calls from the web tier to the API went "
        f"from {duration(before)} to {duration(during)} at p50"
    )
    if not moved:
        return text + (
            f", while the application time stayed where it was ({'; '.join(flat)}): the time "
            "went into the network between the two tiers, not into either tier."
        )
    return text + f"; the application time moved too ({'; '.join(moved)})."


def _recovery(baseline: PhaseResult, recovery: PhaseResult) -> str:
    before, after = baseline.stat("remote", "p50"), recovery.stat("remote", "p50")
    if before is None or after is None:
        return "No traces after the faults were cleared."
    back = after <= max(2 * before, before + 1e6)
    verdict = "back to baseline" if back else "not back to baseline yet"
    return (
        f"After the faults were cleared the remote calls were {verdict}: {duration(after)} "
        f"at p50 (baseline {duration(before)})."
    )


def _amplification(fault: PhaseResult, model: ModelInputs) -> str:
    expectation = fault.expected or model.expectation
    dominant = expectation.dominant
    text = (
        f"Why {seconds(model.link.latency_s)} of delay became "
        f"{duration(fault.stat('remote', 'p50'))} per request: the delay is per packet, not "
        "per request, and each request pays it on the way out and again on the way back. The "
        f"model ({model.injector}) expects {seconds(expectation.total_s)} on average, "
        f"against {duration(fault.stat('remote', 'mean'))} measured; its biggest term is "
        f"{dominant.name}, {seconds(dominant.seconds)}: {dominant.formula}."
    )
    growth = expectation.backlog_growth
    minute = (
        "" if model.load.fault_s == 60 else f" (after a minute of fault, {seconds(growth * 60)})"
    )
    if growth <= 0:
        return text + (
            " The load stays under the cap, so no backlog builds up: each request pays the "
            "round trips and the transfer, and a few a retransmission stall."
        )
    return text + (
        f" The steady load offers more bytes a second than the cap carries, so the backlog "
        f"grew by {growth:.2f} s every second of the fault, to about "
        f"{seconds(expectation.worst_wait_s)} of waiting at its end{minute}: "
        "that growth, not the per-request delay, is how a steady stream turns a 500 ms delay "
        "into many seconds."
    )


# -- the kernel's testimony


def kernel_note(result: ScenarioResult) -> str:
    """Why the kernel's curves show the fault or do not, in one sentence."""
    moved = _ends_moved(result)
    if not moved:
        return (
            "No spans carried TCP_INFO in both the baseline and the fault (the tiers run "
            "off Linux?), so the kernel has nothing to compare."
        )
    if result.kernel is None:
        return _through_the_proxy(moved)
    if all(moved.values()):
        return (
            "The kernel's curves show the fault: tc queues and drops packets on the routed "
            "hop that the connection crosses, so TCP measures the queueing in its round-trip time "
            "and resends what was dropped, below any span."
        )
    if moved.get("api") and result.kernel.latency_via != "netem":
        return (
            "The API tier's end shows the fault and the web tier's does not: tc queues and "
            "drops packets on the routed hop, which the latency proxy's connection to the API "
            "crosses, so TCP there measures the queueing and resends what was dropped, while "
            "the web tier's own connection ends at the proxy on loopback and stays healthy."
        )
    if any(moved.values()):
        return (
            f"The kernel's curves show the fault at the {_ends(moved, True)} only, and not at "
            f"the {_ends(moved, False)}: each end counts what it sent again, and only one "
            "direction's packets met the faults."
        )
    return (
        "The kernel's curves stay flat although tc faulted the hop: the load did not fill "
        "tc's queue nor meet a drop, and the latency added in userspace is invisible to TCP."
    )


def _ends_moved(result: ScenarioResult) -> dict[str, bool]:
    """Per end that testified in both the baseline and the fault, whether it moved."""
    baseline, fault = result.phase("baseline"), result.phase("fault")
    edge = result.component_names["remote"].removesuffix(" remote")
    moved: dict[str, bool] = {}
    for end, key, *_ in ENDS:
        now = (fault.edges if fault else {}).get(edge, {}).get(key)
        before = (baseline.edges if baseline else {}).get(edge, {}).get(key)
        if now and before:
            moved[end] = end_moved(now, before)
    return moved


def _through_the_proxy(moved: dict[str, bool]) -> str:
    if not any(moved.values()):
        return (
            "The kernel's curves do not rise with the remote time: the fault proxy "
            "delays and drops in userspace, between two loopback TCP connections that each "
            "carry every byte promptly, so TCP at neither end sees the fault; only the "
            "trace does."
        )
    return (
        f"The kernel's curves moved at the {_ends(moved, True)} although the faults were "
        "in the userspace proxy: that connection saw delay or resends of its own (a "
        "loaded machine, or the proxy's backlog filling its socket buffers)."
    )


def _ends(moved: dict[str, bool], which: bool) -> str:
    names = {end: label for end, _, label, _ in ENDS}
    return " and the ".join(names[end] for end, did in moved.items() if did is which)
