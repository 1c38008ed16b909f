from collections.abc import Iterator

import pytest

from tests.harness import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


# Whole-lab runs of a minute or more, the real kernel, and tools beside Python (Prometheus,
# pip-audit's advisory service): `pytest -m "not slow"` leaves them out while developing (under
# 3 min on two workers, instead of about 8). `make test` runs everything. Listed here, by
# path, so a new slow file is one line.
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


# What changes the host's own network (namespaces, veths, qdiscs, iptables) or runs containers
# (podman's pods are namespaces, veths and NAT rules too). Under pytest-xdist (`make test` runs
# `-n 2 --dist loadgroup`) these all run on one worker, one after another: the kernel tests check
# that the host is left exactly as they found it, which a neighbour's namespace would break.
HOST_NETWORK = (
    "tests/k8s/",
    "tests/netgap/fault/test_tc.py",
    "tests/netgap/scenario/test_kernel.py",
    "tests/webtier/test_tcp_witness_kernel.py",
)


# Tests whose checks bound a latency percentile measured under their own load (the story's
# /healthz p99 < 50 ms, issue 7): another worker's CPU moves that number, not the code. `make
# test` runs them by themselves (`-m alone`) after the two workers are done.
ALONE = ("tests/survival/test_article_fault.py",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a whole-lab run, a real-kernel test or an image build (tests/conftest.py)"
    )
    # pytest-xdist's own, said again so that `-p no:xdist` still knows it (--strict-markers)
    config.addinivalue_line("markers", "xdist_group(name): run on the same worker as the group")
    config.addinivalue_line(
        "markers",
        "alone: run by itself, after the parallel part of `make test` (tests/conftest.py)",
    )
    listed = (*SLOW, *HOST_NETWORK, *ALONE)
    gone = [path for path in listed if not (config.rootpath / path).exists()]
    if gone:  # a file moved: its tests would quietly join the fast subset, or run beside others
        raise pytest.UsageError(f"tests/conftest.py names what is not there: {gone}")


def worker_group(path: str) -> str:
    """The pytest-xdist group a test file runs in: its own module, so a module-scoped fixture
    (a whole scenario run, a lab) starts once and not once per worker, or the shared host one."""
    return "host-network" if path.startswith(HOST_NETWORK) else path


# tryfirst: xdist reads the groups in its own collection hook, which must see them set
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.relative_to(config.rootpath).as_posix()
        if path.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
        if path.startswith(ALONE):
            item.add_marker(pytest.mark.alone)
        item.add_marker(pytest.mark.xdist_group(worker_group(path)))


# optionalhook: pytest-xdist's own hook, and `-p no:xdist` leaves it unknown
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """The controller's check that the groups took on a worker. If they did not, host-network
    tests would run beside each other and fail for a reason that is not theirs: stop and say why."""
    config = getattr(node, "config", None)
    if config is None or config.getoption("dist") != "loadgroup":
        return
    lost = [nodeid for nodeid in ids if "@" not in nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist's --dist loadgroup did not group {len(lost)} tests ({lost[0]}); "
            "pytest 9.2 undoes it (pytest-dev/pytest-xdist#1386): keep the pytest pinned in "
            "pyproject.toml, or run with WORKERS=0"
        )
