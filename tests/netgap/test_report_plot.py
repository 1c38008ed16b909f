"""`netgap breakdown --plot` as a picture: the PNG read back, its marks counted."""

from pathlib import Path

from netgap.aggregate import Aggregate
from netgap.breakdown import REUSED
from netgap.collector.chains import Chain
from netgap.report import plot, plot_colors
from tests.netgap.pixels import columns, image, rgb

MS = 1_000_000
WINDOW = 10_000 * MS
# remote time per phase, 10 windows each (web self 1 ms and API self 2 ms throughout)
PHASES = {"baseline": MS // 4, "fault": 3000 * MS, "recovery": MS // 2}


def healthy_broken_healthy() -> dict[str, object]:
    chains = []
    for p, remote in enumerate(PHASES.values()):
        for w in range(10):
            for i in range(5):
                start = (p * 10 + w) * WINDOW + i * MS
                chains.append(
                    Chain(f"{p}{w:03d}{i:028x}", start, 3 * MS + remote, "webtier", "apitier",
                          1 * MS, remote, 2 * MS, REUSED, None)
                )  # fmt: skip
    summary = Aggregate(WINDOW).add_all(chains).summary()
    return {"service": "webtier", "summary": summary, "bucket_ns": WINDOW}


def marks(png: bytes, colour: tuple[int, int, int]) -> list[tuple[float, float]]:
    """The centre of each mark of `colour`: runs of columns where some pixel has it."""
    picture = image(png)
    hits: dict[int, list[int]] = {}
    for y in range(picture.height):
        for x in columns(picture, y, 0, picture.width - 1, colour):
            hits.setdefault(x, []).append(y)
    found: list[list[int]] = []
    for x in sorted(hits):
        if not found or x - found[-1][-1] > 1:
            found.append([])
        found[-1].append(x)
    return [
        ((xs[0] + xs[-1]) / 2, sum(y for x in xs for y in hits[x]) / sum(len(hits[x]) for x in xs))
        for xs in found
    ]


def test_the_log_panel_marks_every_window_of_every_phase(tmp_path: Path) -> None:
    report = healthy_broken_healthy()
    png = tmp_path / "breakdown.png"
    plot(report, png)
    names = ["webtier self", "webtier->apitier remote", "apitier self"]
    colour = rgb(plot_colors(names)["webtier->apitier remote"])
    found = marks(png.read_bytes(), colour)
    assert len(found) == 30  # one per window: 10 healthy, 10 broken, 10 healthy again
    ys = {name: [y for _, y in found[i * 10 : (i + 1) * 10]] for i, name in enumerate(PHASES)}
    # higher on the page is a longer time: the fault's marks decades above the others'
    assert max(ys["fault"]) < min(ys["baseline"] + ys["recovery"]) - 100
    # and 0.5 ms above 0.25 ms, legibly apart
    assert max(ys["recovery"]) < min(ys["baseline"]) - 5
    for name in ("webtier self", "apitier self"):
        assert len(marks(png.read_bytes(), rgb(plot_colors(names)[name]))) == 30, name
