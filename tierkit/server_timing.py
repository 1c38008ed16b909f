"""The `Server-Timing` response header (W3C Server Timing): `name;dur=<ms>` entries."""

import math
from collections.abc import Iterable


def server_timing_header(durations_ms: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in durations_ms)


def server_timing_durations(header: str | None) -> dict[str, float]:
    """Durations by metric name; entries without a usable `dur` are left out."""
    durations: dict[str, float] = {}
    for entry in (header or "").split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            try:
                ms = float(value.strip().strip('"'))
            except ValueError:
                break
            if name and math.isfinite(ms) and ms >= 0:
                durations[name] = ms
            break
    return durations
