"""Running `netgap scenario` from a test: its command line on free ports, the ports checked
free again afterwards, and the story's shape as a test can check it on any machine."""

import sys
from pathlib import Path

from netgap.supervisor import check_port_free
from tests.harness import free_port

MS = 1_000_000
PORT_FLAGS = (
    "--web-port",
    "--api-port",
    "--proxy-port",
    "--control-port",
    "--otlp-port",
    "--query-port",
)


def scenario_command(out: Path, ports: dict[str, int], *args: str) -> list[str]:
    port_args = [str(x) for pair in ports.items() for x in pair]
    return [sys.executable, "-m", "netgap", "scenario", "--out", str(out), *port_args, *args]


def free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(PORT_FLAGS):
        ports = {flag: free_port() for flag in PORT_FLAGS}
    return ports


def assert_ports_free(ports: dict[str, int]) -> None:
    for flag, port in ports.items():
        check_port_free("127.0.0.1", port, flag)  # raises if anything still listens


def jumped_and_came_back(baseline: float, fault: float, recovery: float) -> bool:
    """The story's shape, free of the machine's speed: the fault's remote time is seconds, two
    orders of magnitude and more above the healthy one, and the recovery is healthy again
    (within twice the baseline, and half a millisecond). How low the healthy remote time is
    on this machine is the bench's to say (`make bench`, the remote-calls floor): an absolute
    bound here measured the machine (the same code gave 1.1 ms one day and 3 ms the next)."""
    return (
        fault >= 1000 * MS
        and baseline < fault / 100
        and recovery < fault / 100
        and recovery <= 2 * baseline + 0.5 * MS
    )
