"""Durations (`500ms`, `15m`, `1h30m`, Go's syntax) and points in time (RFC 3339, or relative
to now like `-15m`) as the CLI reads them."""

import argparse
import datetime as dt
import re
import time

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def duration_ns(text: str) -> int:
    """`1h30m`, `250ms`, `1.5s`; a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return round(float(text) * 1e9)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 10s, 15m, 1h30m)")
    return sum(round(float(number) * _UNITS_NS[unit]) for number, unit in parts)


def time_ns(text: str, now_ns: int | None = None) -> int:
    """RFC 3339 (`2026-11-25T12:00:00Z`, fractions and offsets allowed), or `-15m` / `now`."""
    now = time.time_ns() if now_ns is None else now_ns
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("-"):
        return now - duration_ns(text[1:])
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?", text)
    if not match:
        raise ValueError(f"not a time: {text!r} (use RFC 3339 like 2026-11-25T12:00:00Z, or -15m)")
    base, fraction, zone = match.groups()
    try:
        stamp = dt.datetime.fromisoformat(base + (zone or "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r}") from None
    return int(stamp.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def duration_arg(text: str) -> int:
    try:
        value = duration_ns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def time_arg(text: str) -> int:
    try:
        return time_ns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
