"""The figures: each with its target and a pass/miss mark; printed as a table, saved as JSON."""

import json
import operator
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_COMPARE: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Figure:
    item: int  # the numbered item
    name: str
    value: float
    unit: str
    op: str | None = None  # "<=" or ">=" the limit; None: reported, no target
    limit: float | None = None
    note: str = ""

    @property
    def target(self) -> str:
        if self.op is None or self.limit is None:
            return "-"
        return f"{self.op} {_number(self.limit)} {self.unit}".rstrip()

    @property
    def passed(self) -> bool | None:
        if self.op is None or self.limit is None:
            return None
        return _COMPARE[self.op](self.value, self.limit)

    @property
    def mark(self) -> str:
        return {True: "pass", False: "MISS", None: "-"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "pass": self.passed,
            "note": self.note,
        }


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(figures: list[Figure]) -> str:
    rows = [("#", "figure", "measured", "target", "")]
    for f in figures:
        rows.append(
            (str(f.item), f.name, f"{_number(f.value)} {f.unit}".rstrip(), f.target, f.mark)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]),
                 row[3].ljust(widths[3]), row[4]]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    lines = ["| # | figure | measured | target | |", "| --- | --- | ---: | --- | --- |"]
    for f in figures:
        value = f"{_number(f.value)} {f.unit}".rstrip()
        lines.append(f"| {f.item} | {f.name} | {value} | {f.target} | {f.mark} |")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def details(rounds: dict[str, Any]) -> str:
    """Per-round values, a few lines per group."""
    out: list[str] = []
    if rounds.get("tracing"):
        out.extend(_tracing_lines(rounds["tracing"]))
    if rounds.get("proxy"):
        out.extend(_proxy_lines(rounds["proxy"]))
    for what in ("metrics", "control"):
        if rounds.get(what):
            out.extend(_switched_lines(what, rounds[what]))
    if rounds.get("tcp_info_in_place"):
        out.extend(_in_place_lines(rounds["tcp_info_in_place"]))
    for mode in ("standard", "lean"):
        if rounds.get(f"floor_{mode}"):
            out.extend(_floor_lines(mode, rounds[f"floor_{mode}"]))
    if rounds.get("rss"):
        out.extend(_rss_lines(rounds["rss"]))
    for key, label, unit in (
        ("ingest", "collector ingest", "spans_per_s"),
        ("breakdown_store", "breakdown from the store", "traces_per_s"),
        ("breakdown_arithmetic", "breakdown arithmetic", "traces_per_s"),
    ):
        if rounds.get(key):
            runs = rounds[key]
            out.append(f"{label}: {unit.replace('_per_s', '/s')} "
                       f"{_series([r[unit] for r in runs], ',')}")  # fmt: skip
    return "\n".join(out)


def _series(values: list[Any], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def _tracing_lines(tracing: dict[str, Any]) -> list[str]:
    out = ["\nper round (the five stacks, order rotating):"]
    runs = tracing["runs"]
    for label in dict.fromkeys(r["stack"] for r in runs):
        for c in sorted({r["connections"] for r in runs}, reverse=True):
            mine = [r for r in runs if r["stack"] == label and r["connections"] == c]
            out.append(
                f"  {label:8} c={c:<3} req/s {_series([r['rate'] for r in mine], '.0f')}"
                f" | p50 ms {_series([r['p50_ms'] for r in mine], '.2f')}"
                f" | p99 ms {_series([r['p99_ms'] for r in mine], '.2f')}"
                f" | CPU s/1000 {_series([r['cpu_s_per_1000'] for r in mine], '.3f')}"
                f" | other CPU s {_series([r['other_cpu_s'] for r in mine], '.1f')}"
            )
    pairs = tracing["pairs"]
    for key in pairs[0] if pairs else ():
        out.append(f"  {key:20s} {_series([p[key] for p in pairs], '.3f')}")
    return out


def _proxy_lines(proxy: dict[str, Any]) -> list[str]:
    out = ["proxy vs direct (wrk to the API tier, QUERY_DELAY_MS=0, untraced):"]
    for via in ("direct", "proxy"):
        for c in sorted({r["connections"] for r in proxy["runs"]}, reverse=True):
            mine = [r for r in proxy["runs"] if r["via"] == via and r["connections"] == c]
            out.append(
                f"  {via:8} c={c:<3} req/s {_series([r['rate'] for r in mine], '.0f')}"
                f" | p50 ms {_series([r['p50_ms'] for r in mine], '.3f')}"
                f" | other CPU s {_series([r['other_cpu_s'] for r in mine], '.1f')}"
            )
    pairs = proxy["pairs"]
    out.append(
        f"  added p50 ms {_series([p['added_p50_ms'] for p in pairs], '.3f')}"
        f" | throughput ratio {_series([p['throughput_ratio'] for p in pairs], '.3f')}"
    )
    return out


def _switched_lines(what: str, switched: dict[str, Any]) -> list[str]:
    out = [f"{what} on vs off (both traced, order alternating):"]
    for label in (switched["on"], switched["off"]):
        runs = [r for r in switched["runs"] if r["stack"] == label]
        out.append(f"  {label:11s} req/s {_series([r['rate'] for r in runs], '.0f')}")
    out.append(
        f"  ratios: throughput {_series(switched['ratios'], '.3f')}"
        f" | CPU/request {_series(switched['cpu_ratios'], '.3f')}"
    )
    return out


def _in_place_lines(in_place: dict[str, Any]) -> list[str]:
    out = ["TCP_INFO in place (one stack switching it every ~0.5 s), CPU per request:"]
    for name, f in in_place["tiers"].items():
        out.append(
            f"  {name:16s} on {f['on_us']:.1f} us | off {f['off_us']:.1f} us | "
            f"on - off {f['cost_us']:.1f} us | A/A {f['aa_us']:.1f} us "
            f"| {f['windows']} windows"
        )
    return out


def _floor_lines(mode: str, floor: list[dict[str, Any]]) -> list[str]:
    return [
        f"remote-calls floor, {mode} (serial wrk on its lab stack, from its traces):",
        f"  traces {_series([w['traces'] for w in floor], 'd')}"
        f" | remote p50 ms {_series([w['remote_p50_ms'] for w in floor], '.3f')}"
        f" | p99 ms {_series([w['remote_p99_ms'] for w in floor], '.3f')}"
        f" | web self p50 {_series([w['webtier_self_p50_ms'] for w in floor], '.3f')}"
        f" | API self p50 {_series([w['apitier_self_p50_ms'] for w in floor], '.3f')}"
        f" | with warnings {_series([w['traces_with_warnings'] for w in floor], 'd')}",
    ]


def _rss_lines(rss: dict[str, Any]) -> list[str]:
    samples = rss["samples"]
    return [
        f"RSS at load ({rss['requests']} requests), MB at t = "
        f"{_series([s['t_s'] for s in samples], '.0f')} s:",
        f"  web {_series([s['web_mb'] for s in samples], '.1f')}",
        f"  API {_series([s['api_mb'] for s in samples], '.1f')}",
    ]
