"""One plotting path for every SVG the toolkit draws (the scenario report's plots, the
recent-traces scatter) and the trace page's waterfall: scales (linear and log), the plot's
frame, tick steps and the marks themselves.

A scale maps a value to a fraction of its axis (0 at the low end, 1 at the high end); the
frame maps fractions to pixels inside its margins, y growing downwards as SVG's does. Marks
are SVG elements as text: attributes in the order given, floats to a tenth of a pixel, text
escaped.
"""

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass


def nice_step(span: float, count: int = 5) -> float:
    """A 1, 2, 2.5 or 5 times a power of ten step giving about `count` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def ticks(top: float, count: int = 5) -> list[float]:
    """Round values from 0 to `top`, about `count` steps apart."""
    step = nice_step(top, count)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


def rounded_top(top: float) -> tuple[float, float]:
    """`top` raised to a whole number of nice steps, and the step."""
    step = nice_step(top)
    return math.ceil(top / step) * step, step


@dataclass(frozen=True)
class Linear:
    """Values from `low` to `high`; with `clamp`, values outside draw at the nearer end."""

    low: float
    high: float
    clamp: bool = True

    def fraction(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return min(max(share, 0.0), 1.0) if self.clamp else share


@dataclass(frozen=True)
class Log:
    """Whole decades, from 10**low to 10**high; a value below draws on the floor."""

    low: int
    high: int

    @classmethod
    def over(cls, values: Sequence[float], empty: float = 1e3) -> "Log":
        """The decades from below the smallest positive value to above the largest (at
        least one decade; `empty` stands in when no value is positive)."""
        positive = [v for v in values if v > 0] or [empty]
        low = math.floor(math.log10(min(positive)))
        return cls(low, max(math.ceil(math.log10(max(positive))), low + 1))

    def fraction(self, value: float) -> float:
        exponent = math.log10(max(value, 10.0**self.low))
        return (exponent - self.low) / (self.high - self.low)

    def decades(self) -> list[int]:
        return list(range(self.low, self.high + 1))


@dataclass(frozen=True)
class Frame:
    """A plot's size and margins (pixels)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> int:
        """The y of the plot's floor (its x axis)."""
        return self.height - self.bottom

    def x(self, fraction: float) -> float:
        return self.left + self.inner_width * fraction

    def y(self, fraction: float) -> float:
        return self.top + self.inner_height * (1 - fraction)


Attribute = str | int | float | None


def number(value: float) -> str:
    """A coordinate as written: whole numbers as they are, others to a tenth of a pixel."""
    return str(value) if isinstance(value, int) else f"{value:.1f}"


def mark(tag: str, attributes: dict[str, Attribute], title: str | None = None,
         text: str | None = None, closed: bool = False) -> str:  # fmt: skip
    """One SVG element: `title` as its tooltip, `text` as its content (both escaped), `/>`
    when empty unless `closed` asks for an end tag."""
    written = " ".join(
        f'{name}="{number(value) if isinstance(value, int | float) else html.escape(value)}"'
        for name, value in attributes.items()
        if value is not None
    )
    body = ""
    if title is not None:
        body += f"<title>{html.escape(title)}</title>"
    if text is not None:
        body += html.escape(text)
    if not body and not closed:
        return f"<{tag} {written}/>"
    return f"<{tag} {written}>{body}</{tag}>"


def points(xy: Sequence[tuple[float, float]]) -> str:
    """A polyline's points."""
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)


def grid_line(frame: Frame, y: float, cls: str = "grid", closed: bool = False,
              first: bool = False) -> str:  # fmt: skip
    """A horizontal line across the plot at `y` (`first`: the class before the ends)."""
    ends: dict[str, Attribute] = {"x1": frame.left, "x2": frame.width - frame.right,
                                  "y1": float(y), "y2": float(y)}  # fmt: skip
    attributes = {"class": cls, **ends} if first else {**ends, "class": cls}
    return mark("line", attributes, closed=closed)


def y_tick(frame: Frame, y: float, label: str, first: bool = False) -> str:
    """A tick's label left of the plot at `y`."""
    where: dict[str, Attribute] = {"x": frame.left - 6, "y": float(y) + 4, "text-anchor": "end"}
    attributes = {"class": "tick", **where} if first else {**where, "class": "tick"}
    return mark("text", attributes, text=label)
