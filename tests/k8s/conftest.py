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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds something real (a venv from the lock); still part of make test"
    )


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
