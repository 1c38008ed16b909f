from collections.abc import Iterator

import pytest

from tests.k8s import engine as engines
from tests.k8s import smoke_report

SMOKE = ("tests/k8s/test_image_smoke.py::", "tests/k8s/test_image_arm64.py::")


@pytest.fixture(scope="module")
def engine() -> Iterator[engines.Engine]:
    """podman, set up here when root (tests/k8s/engine.py); else the one skip line. Held by
    one test module at a time on the machine."""
    reason = engines.missing()
    if reason is not None:
        pytest.skip(reason)
    with engines.exclusive():
        yield engines.Engine.here()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith(SMOKE):
        return
    if report.when == "call" or report.outcome != "passed":
        line = f"{report.outcome.upper():8} {report.nodeid.split('::')[-1]}"
        if report.skipped and isinstance(report.longrepr, tuple):
            line += f": {report.longrepr[2].removeprefix('Skipped: ')}"
        smoke_report.CHECKS.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each check of the image tests by name, and what they measured, even in -q runs."""
    lines = [*smoke_report.CHECKS, *smoke_report.LINES]
    if lines:
        terminalreporter.section("the images, built and run (tests/k8s/test_image_*.py)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The image smoke test is one stack's life (serve, trace, carry traffic, then SIGTERM):
    its tests keep the order they are written in, wherever the random order (pytest-randomly,
    which reorders first) puts them."""
    story = [i for i in items if i.nodeid.startswith(SMOKE[0])]
    places = sorted(items.index(i) for i in story)
    written = sorted(story, key=lambda i: i.reportinfo()[1] or 0)
    for place, item in zip(places, written, strict=True):
        items[place] = item
