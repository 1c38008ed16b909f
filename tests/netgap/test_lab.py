"""netgap.supervisor's Child and netgap.lab's line-up on real processes: ready, pinned, measured
from /proc, stopped in reverse order, and a child that fails to start named with its log."""

import os
import signal
from pathlib import Path

import pytest

from netgap import lab
from netgap.supervisor import Child, ChildFailed, Launch, free_port


def web_server(name: str, logs: Path, cpus: set[int] | None = None) -> Child:
    """`python -m http.server` on a free port: ready when it lists its folder."""
    port = free_port()
    return Child(
        name,
        ["http.server", "--bind", lab.HOST, "--directory", str(logs), str(port)],
        {},
        lab.url(lab.HOST, port),
        *lab.Logs(logs, ".log", ".log").files(name),
        Launch(cpus=cpus),
    )


def test_a_child_is_ready_pinned_measured_and_stopped(tmp_path: Path) -> None:
    core = {min(os.sched_getaffinity(0))}
    child = web_server("server", tmp_path, cpus=core)
    with lab.running(child):
        assert os.sched_getaffinity(child.pid) == core
        assert child.cpu_s() >= 0
        assert child.rss_mb() > 1
        assert not child.exited()
    assert child.exited()
    assert child.returncode() == -signal.SIGTERM  # http.server keeps SIGTERM's default
    assert not child.killed
    # stdout and stderr in one file: the server logged the health check to stderr
    assert "GET / HTTP/1.1" in child.log.read_text()


def test_a_child_that_dies_while_starting_names_its_log(tmp_path: Path) -> None:
    out, err = lab.Logs(tmp_path).files("broken")
    child = Child("broken", ["netgap.no_such_module"], {}, "http://127.0.0.1:9/", out, err)
    child.start()
    with pytest.raises(ChildFailed) as failed:
        child.wait_healthy(10)
    assert str(failed.value) == "broken exited with 1 while starting"
    assert failed.value.hint == f"see {err}"
    assert "No module named netgap.no_such_module" in "\n".join(failed.value.__notes__)
    assert child.stop(1) == 1


def test_a_lineup_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    names = ("collector", "API tier", "fault proxy", "web tier")
    collector, api, proxy, web = (web_server(name, tmp_path) for name in names)
    lineup = lab.LineUp(collector=collector, api=api, web=web, proxy=proxy)
    assert lineup.names() == "collector, API tier, fault proxy and web tier"
    assert lineup.client_side == [proxy, web]
    try:
        lineup.start(*lineup.children)
        assert lineup.exited() is None
        assert list(lineup.stop(proxy, web)) == ["web tier", "fault proxy"]
        assert lineup.exited() is proxy
    finally:
        codes = lineup.stop()
    assert list(codes) == ["web tier", "fault proxy", "API tier", "collector"]
    assert set(codes.values()) == {-signal.SIGTERM}
