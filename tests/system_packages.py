"""Debian packages the tests use beside Python (chromium, wrk, iptables, Prometheus, podman and
the image tools), installed on first use where we may: root, with apt-get. A fresh machine of ours
has none of them, and the tests that need one install it rather than skip.

One install at a time, across pytest-xdist's workers too: apt-get and dpkg take locks of their own
and fail, not wait, when another install holds them, so two workers reaching for chromium and wrk
at once would leave one of them without its tool."""

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "netgap-tests-apt.lock"


def may_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure(present: Callable[[], bool], *packages: str, recommends: bool = True) -> bool:
    """Whether `present()` holds, after installing `packages` first if it did not and we may.
    `present` is asked again once the lock is ours: another worker may have installed them."""
    if present() or not may_install():
        return present()
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not present():
            apt_get(packages, recommends)
    return present()


def ensure_commands(names: tuple[str, ...], *packages: str, recommends: bool = True) -> bool:
    """Whether every command in `names` is on PATH, installing `packages` first if not."""
    return ensure(lambda: all(map(shutil.which, names)), *packages, recommends=recommends)


def apt_get(packages: tuple[str, ...], recommends: bool) -> None:
    install = ["apt-get", "install", "-y", "-qq"]
    if not recommends:
        install.append("--no-install-recommends")
    for argv in (["apt-get", "update", "-qq"], [*install, *packages]):
        try:
            subprocess.run(
                argv,
                capture_output=True,
                timeout=600,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        except subprocess.TimeoutExpired:
            return
