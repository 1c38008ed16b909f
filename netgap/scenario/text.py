"""The scenario's numbers as people read them, and the per-phase table printed at the end of
a run (the page's table shows the same cells)."""

from netgap.scenario import answers
from netgap.scenario.result import PARTS, LoadCounts, PhaseResult, ScenarioResult

METRIC_HEADER = "remote (metric) p50 / p99"


def duration(ns: float | None) -> str:
    """Milliseconds below a second, seconds above: the scale the story switches between."""
    if ns is None:
        return "-"
    if abs(ns) >= 1e9:
        return f"{ns / 1e9:.2f} s"
    return f"{ns / 1e6:.2f} ms"


def seconds(value: float) -> str:
    """Like duration(), without the decimals a round 500 ms does not need."""
    text = duration(value * 1e9)
    return text.replace(".00 ", " ")


def pair(phase: PhaseResult, part: str) -> str:
    """A part's p50 / p99 in the phase."""
    return f"{duration(phase.stat(part, 'p50'))} / {duration(phase.stat(part, 'p99'))}"


def metric_pair(phase: PhaseResult) -> str:
    """The web tier's netgap_remote_seconds over the phase (histogram quantiles)."""
    metric = phase.metric_remote
    return f"{duration(metric.p50)} / {duration(metric.p99)}"


def errors_cell(load: LoadCounts, answered: dict[str, int]) -> str:
    """The load's errors by kind, then the web tier's causes of its non-200 answers."""
    kinds = load.errors_by_kind
    if not kinds:
        return "0"
    causes = answers.failures(answered)
    why = f"; web tier: {causes}" if causes else ""
    return f"{load.errors} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + why + ")"


def window(result: ScenarioResult, phase: PhaseResult) -> str:
    """The phase's window in seconds since the run started: "30-90 s"."""
    origin = result.start_ns
    return f"{(phase.start_ns - origin) / 1e9:.0f}-{(phase.end_ns - origin) / 1e9:.0f} s"


def expected(phase: PhaseResult) -> str:
    """The model's mean remote time for the phase, and its biggest term."""
    expectation = phase.expected
    if expectation is None:
        return "-"
    return f"{seconds(expectation.total_s)} ({expectation.dominant.name})"


def phase_cells(result: ScenarioResult, phase: PhaseResult) -> list[str]:
    """The cells both tables show for a phase, from "sent" on (after phase, window)."""
    load = phase.load
    return [
        str(load.sent),
        str(load.ok),
        errors_cell(load, phase.answers),
        str(phase.traces),
        *(pair(phase, part) for part, _ in PARTS),
        metric_pair(phase),
        pair(phase, "total"),
        expected(phase),
    ]


def part_headers() -> list[str]:
    """The headers of phase_cells() after "traces"."""
    return [f"{label} p50 / p99" for _, label in PARTS] + [METRIC_HEADER, "total p50 / p99"]


def table(result: ScenarioResult) -> str:
    """The per-phase table, p50 / p99 per part, as printed at the end of a run."""
    header = ["phase", "window", "sent", "ok", "errors", "traces"]
    header += [*part_headers(), "expected remote"]
    rows = [header]
    for phase in result.phases:
        rows.append([phase.name, window(result, phase), *phase_cells(result, phase)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
