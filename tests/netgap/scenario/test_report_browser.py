"""The scenario report's plots as Chromium draws them: marks counted in the screenshot."""

from collections.abc import Iterator
from typing import Any

import pytest

from netgap.scenario import plots
from netgap.scenario.page import html_page
from netgap.scenario.result import ScenarioResult
from tests.browser import launched
from tests.netgap.pixels import columns, image, rgb
from tests.netgap.scenario.samples import sample


@pytest.fixture(scope="module")
def drawn() -> Iterator[tuple[Any, Any, ScenarioResult]]:
    """The sample run's page in Chromium: the page, its screenshot, the result."""
    result = sample()
    with launched() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_content(html_page(result))
        yield page, image(page.screenshot(full_page=True)), result


def marks(picture: Any, box: dict[str, float], x0: float, x1: float, colour: Any) -> int:
    """Separate marks of `colour` between x0 and x1 inside `box`: runs of columns where any
    pixel of the box has it."""
    hit = sorted(
        {
            x
            for y in range(int(box["y"]), int(box["y"] + box["height"]))
            for x in columns(picture, y, x0, x1, colour)
        }
    )
    return sum(1 for i, x in enumerate(hit) if i == 0 or x - hit[i - 1] > 1)


def phase_ranges(result: ScenarioResult, box: dict[str, float]) -> dict[str, tuple[float, float]]:
    inner = box["width"] - plots.MARGIN_LEFT - plots.MARGIN_RIGHT
    span = result.end_ns - result.start_ns

    def x(ns: int) -> float:
        return float(box["x"] + plots.MARGIN_LEFT + inner * (ns - result.start_ns) / span)

    return {p.name: (x(p.start_ns) + 1, x(p.end_ns) - 1) for p in result.phases}


def test_the_log_panel_has_a_mark_per_bucket_in_every_phase(
    drawn: tuple[Any, Any, ScenarioResult],
) -> None:
    page, picture, result = drawn
    box = page.locator("svg#log-plot").bounding_box()
    assert box is not None
    remote = rgb(plots.COLORS["remote"])
    counted = {
        name: marks(picture, box, lo, hi, remote)
        for name, (lo, hi) in phase_ranges(result, box).items()
    }
    buckets = {
        p.name: sum(1 for b in result.series.buckets if p.start_ns <= b.start_ns < p.end_ns)
        for p in result.phases
    }
    assert buckets == {"baseline": 15, "fault": 30, "recovery": 15}
    assert counted == buckets
    # and the app's own time is drawn in every phase too
    for part in ("web", "api"):
        for name, (lo, hi) in phase_ranges(result, box).items():
            assert marks(picture, box, lo, hi, rgb(plots.COLORS[part])) > 0, (part, name)


def test_the_stacked_panel_draws_the_fault(drawn: tuple[Any, Any, ScenarioResult]) -> None:
    page, picture, result = drawn
    box = page.locator("svg#plot").bounding_box()
    assert box is not None
    ranges = phase_ranges(result, box)
    # the fault's 30 buckets, side by side: one run of columns
    assert marks(picture, box, *ranges["fault"], rgb(plots.COLORS["remote"])) >= 1
