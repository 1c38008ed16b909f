from collections.abc import Iterator

import pytest

from tests.harness import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


# Whole-lab runs of a minute or more, the real kernel, and tools beside Python (Prometheus,
# pip-audit's advisory service): `pytest -m "not slow"` leaves them out while developing (about
# 4 min instead of 11). `make test` runs everything. Listed here, by path, so a new slow file
# is one line.
SLOW = (
    "tests/bench/",
    "tests/survival/",
    "tests/netgap/scenario/test_scenario.py",
    "tests/netgap/scenario/test_kernel.py",
    "tests/netgap/test_story_local.py",
    "tests/netgap/commands/test_demo.py",
    "tests/netgap/commands/test_breakdown_metrics.py",
    "tests/webtier/test_tcp_witness_kernel.py",
    "tests/test_supply_chain.py",
    "tests/k8s/test_image_smoke.py",
    "tests/k8s/test_image_arm64.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a whole-lab run, a real-kernel test or an image build (tests/conftest.py)"
    )
    gone = [path for path in SLOW if not (config.rootpath / path).exists()]
    if gone:  # a file moved: its tests would quietly join the fast subset
        raise pytest.UsageError(f"tests/conftest.py SLOW names what is not there: {gone}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.relative_to(config.rootpath).as_posix()
        if path.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
