"""Reading a browser's screenshot as a picture: which pixel columns of a line carry a colour."""

import io
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

RGB = tuple[int, int, int]
TOLERANCE_PX = 3  # how far a drawn edge may sit from where the numbers put it


def image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def rgb(css: str) -> RGB:
    """`#rrggbb` (a CSS variable's computed value) as a tuple."""
    text = css.strip().lstrip("#")
    assert len(text) == 6, css
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def close(a: RGB, b: RGB, within: int = 24) -> bool:
    return all(abs(x - y) <= within for x, y in zip(a, b, strict=True))


def columns(picture: Image.Image, y: float, x0: float, x1: float, colour: RGB) -> list[int]:
    """The x of every pixel on line `y` between x0 and x1 that has `colour`."""
    row = round(y)
    pixels = picture.load()
    assert pixels is not None
    return [
        x
        for x in range(max(0, int(x0)), min(picture.width, int(x1) + 1))
        if close(pixels[x, row], colour)  # type: ignore[arg-type]
    ]


@dataclass(frozen=True)
class Segment:
    """Where a bar should be drawn on a line, in pixels, and in which colour."""

    what: str
    left: float
    right: float
    colour: RGB

    @property
    def width(self) -> float:
        return self.right - self.left


def check_line(
    picture: Image.Image,
    y: float,
    x0: float,
    x1: float,
    expected: Iterable[Segment],
    on_top: RGB | None = None,
) -> list[str]:
    """What is wrong with line `y` between x0 and x1 (empty: nothing): each segment drawn in
    its colour from its left to its right edge (within TOLERANCE_PX, at least 90% of the
    columns between), and none of those colours anywhere else. `on_top`: the colour of marks
    drawn over the bars, which count as the bar they cover."""
    problems = []
    segments = list(expected)
    covered = set(columns(picture, y, x0, x1, on_top)) if on_top else set()
    for colour in {s.colour for s in segments}:
        mine = [s for s in segments if s.colour == colour]
        drawn = columns(picture, y, x0, x1, colour)
        found = sorted(
            set(drawn) | {x for x in covered if any(s.left - 3 <= x <= s.right + 3 for s in mine)}
        )
        for s in mine:
            if s.width < TOLERANCE_PX:
                continue  # a sliver: where it is, is checked below; that it shows, is not
            inside = [x for x in found if s.left - TOLERANCE_PX <= x <= s.right + TOLERANCE_PX]
            if not inside:
                problems.append(f"{s.what}: nothing drawn at {s.left:.0f}-{s.right:.0f} px")
                continue
            first, last = inside[0], inside[-1] + 1
            if abs(first - s.left) > TOLERANCE_PX or abs(last - s.right) > TOLERANCE_PX:
                problems.append(
                    f"{s.what}: drawn at {first}-{last} px, expected {s.left:.1f}-{s.right:.1f}"
                )
            elif len(inside) < 0.9 * (last - first):
                problems.append(f"{s.what}: {len(inside)} of {last - first} columns drawn")
        stray = [
            x
            for x in drawn
            if not any(s.left - TOLERANCE_PX <= x <= s.right + TOLERANCE_PX for s in mine)
        ]
        if stray:
            problems.append(f"{colour} drawn where no bar is: x {stray[0]}..{stray[-1]}")
    return problems
