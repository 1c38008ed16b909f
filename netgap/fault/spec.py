"""The fault vocabulary every injector shares: what to do to traffic, parsed and checked once.

Units follow tc, since that is what users of Comcast and netem already type: `kbit` is 1000 bits
a second and `kbps` 1000 *bytes* a second; `Kibit` is 1024 bits. Percentages are `1%` or `1`.
"""

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from netgap.timeparse import TimeFormatError, duration_ns

Direction = Literal["both", "upstream", "downstream"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

_RATE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)")
_RATE_UNITS_BPS = {  # bits a second, iproute2's get_rate() table
    "": 8,  # a bare number is bytes a second, as in tc
    "bit": 1,
    "kbit": 1000,
    "mbit": 1000**2,
    "gbit": 1000**3,
    "kibit": 1024,
    "mibit": 1024**2,
    "gibit": 1024**3,
    "bps": 8,
    "kbps": 8 * 1000,
    "mbps": 8 * 1000**2,
    "gbps": 8 * 1000**3,
}
MAX_LATENCY_S = 3600.0


class FaultSpecError(ValueError):
    """A fault value that cannot be; the message names the field and the expected form."""


def parse_rate_bps(text: str) -> int:
    """`50kbit` -> 50000 bits a second. 0 is refused: a link that sends nothing is a partition."""
    match = _RATE.fullmatch(text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _RATE_UNITS_BPS:
        raise FaultSpecError(
            f"rate: {text!r} is not a rate like 50kbit, 1mbit or 6250bps (kbit = kilobits/s, "
            "kbps = kilobytes/s)"
        )
    bps = float(match.group(1)) * _RATE_UNITS_BPS[unit]
    if not 1 <= bps < 2**63:
        raise FaultSpecError(f"rate: {text!r} must be at least 1bit and finite")
    return round(bps)


def format_rate(bps: int) -> str:
    for unit in ("gbit", "mbit", "kbit"):
        size = _RATE_UNITS_BPS[unit]
        if bps % size == 0:
            return f"{bps // size}{unit}"
    return f"{bps}bit"


def parse_fraction(text: str, field: str) -> float:
    """`1%`, `0.1%` or `1` (percent, as tc reads it) -> 0.01, 0.001, 0.01."""
    number = text.strip().removesuffix("%").strip()
    try:
        percent = float(number)
    except ValueError:
        raise FaultSpecError(f"{field}: {text!r} is not a percentage like 1% or 0.1%") from None
    if not 0 <= percent <= 100:  # also refuses nan
        raise FaultSpecError(f"{field}: {text!r} must be from 0% to 100%")
    return percent / 100


def format_fraction(value: float) -> str:
    return f"{value * 100:g}%"


def parse_duration_s(text: str, field: str) -> float:
    """`500ms`, `1.5s`, or plain milliseconds (`500`), as Comcast's --latency takes them."""
    stripped = text.strip()
    try:
        seconds = float(stripped) / 1000 if _is_number(stripped) else duration_ns(stripped) / 1e9
    except TimeFormatError:
        raise FaultSpecError(
            f"{field}: {text!r} is not a duration like 500ms, 1.5s or 500 (milliseconds)"
        ) from None
    if not 0 <= seconds <= MAX_LATENCY_S:
        raise FaultSpecError(f"{field}: {text!r} must be from 0 to {MAX_LATENCY_S:g}s")
    return seconds


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


@dataclass(frozen=True)
class Faults:
    """What is done to traffic in each faulted direction. The zero value does nothing.

    latency_s  added one way, per direction (a round trip through `both` gains twice it)
    jitter_s   +- uniform spread around latency_s; never reorders bytes
    rate_bps   a cap in bits a second, one bucket per direction; None: no cap
    loss       chance that a segment is lost (TCP then stalls for a retransmission)
    reset      chance that a connection is closed with RST, per chunk forwarded
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    rate_bps: int | None = None
    loss: float = 0.0
    reset: float = 0.0
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if self.jitter_s > self.latency_s:
            raise FaultSpecError(
                f"jitter: {format_duration(self.jitter_s)} is more than the latency "
                f"{format_duration(self.latency_s)}; a delay cannot go below zero"
            )
        if self.direction not in DIRECTIONS:
            raise FaultSpecError(
                f"direction: {self.direction!r} is not one of {', '.join(DIRECTIONS)}"
            )

    @property
    def active(self) -> bool:
        return bool(self.latency_s or self.rate_bps or self.loss or self.reset)

    def applies_upstream(self) -> bool:
        """client -> server, toxiproxy's `upstream`."""
        return self.direction in ("both", "upstream")

    def applies_downstream(self) -> bool:
        """server -> client, toxiproxy's `downstream`."""
        return self.direction in ("both", "downstream")

    def to_json(self) -> dict[str, Any]:
        """The control API's shape: the units a user types, so GET output can be PUT back."""
        return {
            "latency": format_duration(self.latency_s),
            "jitter": format_duration(self.jitter_s),
            "rate": None if self.rate_bps is None else format_rate(self.rate_bps),
            "loss": format_fraction(self.loss),
            "reset": format_fraction(self.reset),
            "direction": self.direction,
        }

    @classmethod
    def from_json(cls, data: object, base: "Faults | None" = None) -> "Faults":
        """Fields given replace those of `base` (PATCH-like PUT); unknown fields are an error."""
        if not isinstance(data, dict):
            raise FaultSpecError('faults must be a JSON object like {"latency": "500ms"}')
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise FaultSpecError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
            )
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if value is not None and not isinstance(value, str | int | float):
                raise FaultSpecError(f"{name}: expected a string like in GET's output")
            changes.update(_FIELDS[name](value))
        return replace(base or cls(), **changes)

    def describe(self) -> str:
        """One line for logs and reports, only what is set."""
        if not self.active:
            return "no faults"
        parts = []
        if self.latency_s:
            parts.append(f"latency {format_duration(self.latency_s)}")
            if self.jitter_s:
                parts[-1] += f" +- {format_duration(self.jitter_s)}"
        if self.rate_bps:
            parts.append(f"rate {format_rate(self.rate_bps)}")
        if self.loss:
            parts.append(f"loss {format_fraction(self.loss)}")
        if self.reset:
            parts.append(f"reset {format_fraction(self.reset)}")
        return ", ".join(parts) + f" ({self.direction})"


def _text(value: str | float | None, field: str) -> str:
    if value is None:
        raise FaultSpecError(f"{field}: null is only allowed for rate (no cap)")
    return str(value)


_FIELDS: dict[str, Any] = {
    "latency": lambda v: {"latency_s": parse_duration_s(_text(v, "latency"), "latency")},
    "jitter": lambda v: {"jitter_s": parse_duration_s(_text(v, "jitter"), "jitter")},
    "rate": lambda v: {"rate_bps": None if v in (None, "", "0") else parse_rate_bps(str(v))},
    "loss": lambda v: {"loss": parse_fraction(_text(v, "loss"), "loss")},
    "reset": lambda v: {"reset": parse_fraction(_text(v, "reset"), "reset")},
    "direction": lambda v: {"direction": _text(v, "direction")},
}

# The story: Comcast on the overlay with 500 ms latency, a 50 kbit/s cap and minor loss.
PRESETS: dict[str, Faults] = {
    "article": Faults(latency_s=0.5, rate_bps=50_000, loss=0.01),
}
