"""The scenario's report drawn from a fixed result (no processes): the page, the plot, the
table, the words."""

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from netgap import svg
from netgap.scenario import diagnosis, plots, report, text
from netgap.scenario.page import html_page
from netgap.scenario.result import ScenarioResult
from tests.netgap.scenario.samples import (
    ARTICLE_TEXT,
    KERNEL,
    MS,
    START,
    S,
    components,
    sample,
    sample_json,
)

VOID = {"meta", "br", "img", "input", "link", "hr"}


class Checker(HTMLParser):
    """Collects tags and attributes, and checks that every element opened is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            found
            for name, found in self.tags
            if name == tag and all(found.get(k) == v for k, v in attrs.items())
        ]


@pytest.fixture(scope="module")
def page() -> str:
    return html_page(sample())


@pytest.fixture(scope="module")
def parsed(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    return checker


def test_page_parses_as_html_with_every_element_closed(page: str, parsed: Checker) -> None:
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert parsed.errors == []
    assert parsed.stack == []
    assert parsed.find("meta", charset="utf-8")
    assert len(parsed.find("title")) >= 1


def test_page_needs_nothing_from_outside(page: str, parsed: Checker) -> None:
    assert re.search(r"https?://|//[a-z]", page, re.IGNORECASE) is None
    assert not parsed.find("script")
    assert not parsed.find("link")
    assert not parsed.find("img")
    assert "@import" not in page
    assert "url(" not in page
    for _, attrs in parsed.tags:
        assert not {"src", "href", "xlink:href"} & set(attrs), attrs


def test_the_plot_is_an_inline_svg_with_the_fault_window_shaded(parsed: Checker) -> None:
    svgs = parsed.find("svg", id="plot")
    assert len(svgs) == 1
    assert svgs[0]["width"] == str(plots.PLOT_WIDTH)
    windows = parsed.find("rect", **{"class": "fault-window"})
    assert len(windows) == 2  # the stacked plot's and the log panel's, alike
    assert windows[0]["x"] == windows[1]["x"]
    assert windows[0]["width"] == windows[1]["width"]
    inner = plots.PLOT_WIDTH - plots.MARGIN_LEFT - plots.MARGIN_RIGHT
    # 30 s to 90 s of a 120 s run
    assert float(windows[0]["x"] or 0) == pytest.approx(plots.MARGIN_LEFT + inner / 4, abs=0.1)
    assert float(windows[0]["width"] or 0) == pytest.approx(inner / 2, abs=0.1)
    assert windows[0]["fill"] == plots.FAULT_FILL


def test_the_plot_stacks_web_remote_and_api_per_bucket(parsed: Checker) -> None:
    for part in ("web", "remote", "api"):
        bars = parsed.find("rect", **{"class": part})
        assert len(bars) == 60, part
    # the tallest stack is the last bucket of the fault (t = 88 s): web 2.2 ms, remote 10.86 s,
    # on a y axis in seconds up to a round 12.5
    tallest = min(float(bar["y"] or 0) for bar in parsed.find("rect", **{"class": "remote"}))
    inner = plots.PLOT_HEIGHT - plots.MARGIN_TOP - plots.MARGIN_BOTTOM
    assert tallest == pytest.approx(plots.MARGIN_TOP + inner * (1 - 10.8622 / 12.5), abs=0.1)
    labels = " ".join(parsed.text)
    assert "12.5 s" in labels
    assert "120 s" in labels  # the time axis to the end of the run


def test_the_table_has_a_row_per_phase_with_p50_and_p99(parsed: Checker, page: str) -> None:
    assert len(parsed.find("table", id="phases")) == 1
    rows = [attrs["data-phase"] for attrs in parsed.find("tr") if "data-phase" in attrs]
    assert rows == ["baseline", "fault", "recovery"]
    fault_row = re.search(r'<tr class="fault" data-phase="fault">(.*?)</tr>', page)
    assert fault_row is not None
    cells = [
        # as read: numbers are kept whole with non-breaking spaces and hyphens
        html.unescape(cell).replace("\u00a0", " ").replace("\u2011", "-")
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", fault_row.group(1))
    ]
    assert "30&#8209;90&nbsp;s" in fault_row.group(1)
    assert cells[:7] == ["fault", "30-90 s", ARTICLE_TEXT, "1800", "1797", "3 (5xx 3)", "1740"]
    assert cells[7] == "2.30 ms / 4.60 ms"  # web self p50 / p99
    assert cells[8] == "6.10 s / 12.20 s"  # remote
    assert cells[9] == "3.00 ms / 6.00 ms"  # API self
    assert cells[10] == "6.20 s / 12.50 s"  # remote, from the web tier's metric
    assert cells[12].endswith("(queueing)")


def test_expected_against_measured_names_the_dominant_term(parsed: Checker, page: str) -> None:
    assert len(parsed.find("table", id="model")) == 1
    dominant = re.search(r'<tr class="dominant"><td>(\w+)</td>', page)
    assert dominant is not None
    assert dominant.group(1) == "queueing"
    assert "measured remote, p50</td><td>6.10 s" in page


def test_the_diagnosis_says_what_moved_why_and_that_it_came_back() -> None:
    text = sample().diagnosis
    assert "went from 1.30 ms to 6.10 s at p50" in text
    assert "application time stayed where it was" in text
    assert "back to baseline: 1.40 ms" in text
    assert "biggest term is queueing" in text
    assert "grew by 0.17 s every second" in text
    assert len(text.split("\n\n")) == 3


def test_the_diagnosis_says_when_the_application_time_moved_too() -> None:
    data = sample_json()
    data["phases"][1]["components"] = components(9 * MS, 6.1 * S, 3.0 * MS)
    words = diagnosis.diagnose(ScenarioResult.from_json(data))
    assert "the application time moved too (web self 2.20 ms -> 9.00 ms)" in words


def test_text_from_the_run_is_escaped() -> None:
    data = sample_json()
    data["faults_text"] = "<script>alert(1)</script>"
    page = html_page(ScenarioResult.from_json(data))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_terminal_table_lines_up_p50_and_p99_per_phase() -> None:
    lines = text.table(sample()).splitlines()
    assert lines[0].split()[:6] == ["phase", "window", "sent", "ok", "errors", "traces"]
    assert [line.split()[0] for line in lines[1:]] == ["baseline", "fault", "recovery"]
    column = lines[0].index("remote calls p50 / p99")
    assert lines[1][column:].startswith("1.30 ms / 2.60 ms ")
    assert lines[2][column:].startswith("6.10 s / 12.20 s ")


def test_write_puts_json_and_html_side_by_side(tmp_path: Path) -> None:
    result = sample()
    json_path, html_path = report.write(result, tmp_path / "out")
    assert json.loads(json_path.read_text()) == sample_json()
    assert ScenarioResult.from_json(json.loads(json_path.read_text())) == result
    assert html_path.read_text() == html_page(result)


@pytest.mark.parametrize(
    ("span", "count", "step"),
    [(120, 60, 2), (24, 60, 0.5), (11.2, 5, 2.5), (1.0, 5, 0.2), (30, 5, 10), (0.0, 5, 1.0)],
)
def test_nice_steps(span: float, count: int, step: float) -> None:
    assert svg.nice_step(span, count) == pytest.approx(step)


# -- the kernel's curves


def tcp(srtt_ns: float, retransmits: float, calls: int = 60) -> dict[str, Any]:
    """One end's testimony as the aggregate sums it up."""
    return {
        "calls": calls,
        "srtt": {"p50": srtt_ns, "p90": srtt_ns, "p99": srtt_ns, "max": srtt_ns, "mean": srtt_ns},
        "retransmits": {"p50": 0, "p90": 1, "p99": 1, "max": 2, "mean": retransmits},
    }


def with_testimony(
    web_fault: tuple[float, float],
    api_fault: tuple[float, float],
    kernel: dict[str, Any] | None = None,
) -> ScenarioResult:
    """sample() with TCP_INFO at both ends: 0.2 ms srtt and no resends outside the fault,
    (srtt ns, retransmissions per request) at each end during it."""
    result = sample_json()
    result["kernel"] = kernel
    calm = (0.2 * MS, 0.0)
    for phase_ in result["phases"]:
        web, api = (web_fault, api_fault) if phase_["faults_active"] else (calm, calm)
        phase_["edges"] = {"webtier->apitier": {"tcp": tcp(*web), "tcp_callee": tcp(*api)}}
    for bucket in result["series"]["buckets"]:
        faulted = 30 * S <= bucket["start_ns"] - START < 90 * S
        web, api = (web_fault, api_fault) if faulted else (calm, calm)
        bucket["tcp"] = {
            end: {"calls": 60, "srtt_p50": srtt, "retransmits_mean": resent}
            for end, (srtt, resent) in (("web", web), ("api", api))
        }
    return ScenarioResult.from_json(result)


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def test_without_tcp_info_there_are_no_kernel_curves(parsed: Checker, page: str) -> None:
    assert not parsed.find("svg", id="srtt-plot")
    assert "What the kernel saw" not in page


def test_the_kernel_curves_plot_srtt_on_a_log_scale_and_resends_per_end() -> None:
    result = with_testimony((0.2 * MS, 0.0), (400 * MS, 0.3))
    page = html_page(result)
    parsed = parse(page)
    for plot in ("srtt-plot", "retransmits-plot"):
        assert len(parsed.find("svg", id=plot)) == 1
    for end in ("web", "api"):
        assert len(parsed.find("polyline", **{"class": end})) == 2  # one per plot
        assert len(parsed.find("circle", **{"class": end})) == 2 * 60
    labels = " ".join(parsed.text)
    # decades from 0.1 ms (below 0.2 ms) to 1 s (above 400 ms)
    for tick in ("0.1 ms", "1 ms", "10 ms", "100 ms", "1 s"):
        assert tick in labels, tick
    assert "API tier's end (its SERVER spans): 400.00 ms (60 calls)" in labels
    assert "API tier's end (its SERVER spans): 0.30 per request (60 calls)" in labels
    # the fault window is shaded on all four plots (stacked, its log panel, the two curves)
    assert len(parsed.find("rect", **{"class": "fault-window"})) == 4


def test_in_kernel_mode_without_netem_the_api_end_shows_the_fault_and_the_note_says_why() -> None:
    result = with_testimony((0.2 * MS, 0.0), (400 * MS, 0.3), KERNEL)
    note = diagnosis.kernel_note(result)
    assert note.startswith("The API tier's end shows the fault and the web tier's does not")
    assert "ends at the proxy on loopback" in note
    page = html_page(result)
    assert "between them the hop namespace netgap-hop-1 routes every packet" in page
    assert "(ng-hop-w, ng-hop-a) carry the faults" in page


def test_in_kernel_mode_with_both_ends_faulted_the_note_says_tc_queues_and_drops() -> None:
    result = with_testimony((300 * MS, 0.2), (400 * MS, 0.3), {**KERNEL, "latency_via": "netem"})
    assert diagnosis.kernel_note(result).startswith("The kernel's curves show the fault: tc queues")


def test_through_the_userspace_proxy_the_curves_stay_flat_and_the_note_says_why() -> None:
    result = with_testimony((0.25 * MS, 0.0), (0.3 * MS, 0.0))
    note = diagnosis.kernel_note(result)
    assert note.startswith("The kernel's curves do not rise with the remote time")
    assert "the fault proxy delays and drops in userspace" in note
    page = html_page(result)
    assert f'<p id="kernel-note">{escape(note)}</p>' in page


def test_a_curve_that_moved_through_the_proxy_is_called_out() -> None:
    result = with_testimony((0.25 * MS, 0.0), (50 * MS, 0.0))
    note = diagnosis.kernel_note(result)
    assert note.startswith("The kernel's curves moved at the API tier's end (its SERVER spans)")
