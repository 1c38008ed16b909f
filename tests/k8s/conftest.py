import pytest

from tests.k8s import smoke_report

SMOKE = "tests/k8s/test_image_smoke.py::"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds something real (a venv from the lock); still part of make test"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each check of the image smoke test by name, and what it measured, even in -q runs."""
    outcomes = []
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(SMOKE) and (report.when == "call" or outcome != "passed"):
                outcomes.append(f"{outcome.upper():8} {nodeid.removeprefix(SMOKE)}")
    if not outcomes and not smoke_report.LINES:
        return
    terminalreporter.section("image smoke test (tests/k8s/test_image_smoke.py)")
    for line in [*outcomes, *smoke_report.LINES]:
        terminalreporter.write_line(line)
