"""Two network namespaces joined by a veth pair, for tests that run tc and iptables for real.

Names start with `ngt-` and end in a random suffix; `netns_pair` always deletes both, which
deletes the veth pair with them. Addresses are from TEST-NET-1 (192.0.2.0/24) and never leave
the pair.
"""

import functools
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from netgap.fault.tc import Argv, run_command
from tests.system_packages import ensure_commands

LEFT_DEV, RIGHT_DEV = "ngt0", "ngt1"
LEFT_IP, RIGHT_IP = "192.0.2.1", "192.0.2.2"
COMMAND_TIMEOUT_S = 20.0


@functools.cache
def missing() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: network namespaces, tc and iptables"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("iptables", "iptables")):
        if not ensure_commands((tool,), package):
            return f"needs {tool} (apt-get install {package})"
    name = f"ngt-check-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@dataclass(frozen=True)
class Pair:
    left: str
    right: str

    def run(
        self, netns: str, argv: Sequence[str], check: bool = True
    ) -> "subprocess.CompletedProcess[str]":
        done = subprocess.run(
            ["ip", "netns", "exec", netns, *argv],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} in {netns}: {done.stderr.strip()}")
        return done

    def runner(self, netns: str) -> Callable[[Argv], "subprocess.CompletedProcess[str]"]:
        """tc.run_command, inside `netns`: what the plan runner is given in tests."""

        def run_there(argv: Argv) -> "subprocess.CompletedProcess[str]":
            return run_command(("ip", "netns", "exec", netns, *argv))

        return run_there

    def state(self, netns: str) -> str:
        """What a fault changes, as text to compare before and after: every qdisc, the filters
        of the veth end, and the iptables rules of both families."""
        parts = []
        for argv in (
            ("tc", "qdisc", "show"),
            ("tc", "filter", "show", "dev", LEFT_DEV if netns == self.left else RIGHT_DEV),
            ("iptables", "-S"),
            ("iptables", "-t", "mangle", "-S"),
            ("ip6tables", "-t", "mangle", "-S"),
        ):
            if shutil.which(argv[0]) is None:
                continue
            done = self.run(netns, argv, check=False)
            parts.append(f"$ {shlex.join(argv)} -> {done.returncode}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)


@contextmanager
def netns_pair() -> Iterator[Pair]:
    suffix = secrets.token_hex(3)
    pair = Pair(f"ngt-{suffix}-l", f"ngt-{suffix}-r")
    try:
        for netns in (pair.left, pair.right):
            _ip("netns", "add", netns)
        peer = ("peer", "name", RIGHT_DEV, "netns", pair.right)
        _ip("-n", pair.left, "link", "add", LEFT_DEV, "type", "veth", *peer)
        for netns, dev, address in (
            (pair.left, LEFT_DEV, LEFT_IP),
            (pair.right, RIGHT_DEV, RIGHT_IP),
        ):
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", netns, "link", "set", "dev", dev, "up")
            _ip("-n", netns, "link", "set", "dev", "lo", "up")
        yield pair
    finally:
        for netns in (pair.left, pair.right):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"ip {shlex.join(args)}: {done.stderr.strip()}")
