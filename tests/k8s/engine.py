"""A container engine for the image smoke test: podman, as root, from Debian's packages.

No registry is reachable here, so nothing is pulled. The base image is bootstrapped with
debootstrap from the Debian mirror apt already uses, and the locked wheels are downloaded on the
host (pip inside a build cannot verify PyPI's certificate here); the builds then install them
with --no-index. Both are cached outside the repository (CACHE, or $NETGAP_IMAGE_CACHE): the
base in podman's own storage, the wheels in a directory per Python and machine. A second run
only rebuilds the layers that changed.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.system_packages import ensure_commands, may_install

CACHE = Path(os.environ.get("NETGAP_IMAGE_CACHE", "/var/cache/netgap-images"))
# What the test needs from Debian: the engine and its runtime pieces, debootstrap for the base,
# iptables for the Service stand-ins (tests/k8s/pods.py).
PACKAGES = (
    "podman",
    "buildah",
    "runc",
    "debootstrap",
    "uidmap",
    "slirp4netns",
    "fuse-overlayfs",
    "iptables",
)
SUITE = "bookworm"
# The stand-in for python:3.12-slim: Debian's Python with `python`, the venv module and, as
# that image has them, the C headers (arm64 compiles hdrhistogram's extension against them).
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "libpython3-dev")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# crun refuses this kind of machine's hybrid cgroup hierarchy, and the engine's default
# ulimits exceed what the kernel grants a container here: both set for the test's runs only.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
# Debian's names for the machines the images are built for (OCI's are the same).
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class EngineError(AssertionError):
    """A set-up step failed; the message says which and shows its output."""


def missing() -> str | None:
    """Why no container engine can run here (the skip line), or None. As root with apt-get,
    installs Debian's packages first, as the browser tests install chromium."""
    if not ensure_commands(("podman",), *PACKAGES, recommends=False):
        return (
            "no container engine: needs podman (as root: apt-get install "
            + " ".join(PACKAGES)
            + ")"
        )
    if os.geteuid() != 0:
        return "the image smoke test runs podman as root (debootstrap, iptables, container IPs)"
    ensure_commands(("debootstrap", "iptables", "nsenter", "runc"), *PACKAGES, recommends=False)
    return None


BINFMT = Path("/proc/sys/fs/binfmt_misc")


def arm64_missing() -> str | None:
    """Why linux/arm64 containers cannot run here (the skip line), or None. As root with
    apt-get, installs qemu-user-static and registers it with the kernel's binfmt_misc (mounted
    first where nothing did), which is what Debian's packages do on a booted system."""
    handler = BINFMT / "qemu-aarch64"
    if not handler.exists() and may_install():
        tools = ("qemu-aarch64-static", "update-binfmts")
        ensure_commands(tools, "qemu-user-static", "binfmt-support", recommends=False)
        if not (BINFMT / "register").exists():
            subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                capture_output=True,
                timeout=30,
            )
        if shutil.which("update-binfmts"):
            subprocess.run(
                ["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, timeout=60
            )
    if not handler.exists() or "enabled" not in handler.read_text():
        return "no arm64 emulation here: needs qemu-user-static registered in binfmt_misc"
    return None


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One test run at a time on this machine's engine: runs from two checkouts share the
    cache, the base and the image tags (a build removes the image its tag named before)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Engine:
    """podman with the test's own CONTAINERS_CONF."""

    conf: Path

    @classmethod
    def here(cls) -> "Engine":
        CACHE.mkdir(parents=True, exist_ok=True)
        conf = CACHE / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        return cls(conf)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )
        if check and done.returncode != 0:
            raise EngineError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror apt uses here for the suite (one-line or deb822 sources), else the
    first Debian one, else deb.debian.org."""
    entries: list[tuple[str, list[str]]] = []
    sources = Path("/etc/apt")
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
        else:
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (
                        line.partition(":") for line in stanza.splitlines() if ":" in line
                    )
                    if not key.lstrip().startswith("#")
                )
                if "deb" in fields.get("types", "").split() and "uris" in fields:
                    for uri in fields["uris"].split():
                        entries.append((uri, fields.get("suites", "").split()))
    for uri, suites in entries:
        if suite in suites:
            return uri.rstrip("/")
    for uri, _ in entries:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def base_image(engine: Engine, machine: str = "x86_64") -> str:
    """A Debian with Python, imported into podman's storage once and reused after."""
    arch = DEBIAN_ARCH[machine]
    # The tag names what went in, so a changed package list makes a new base.
    recipe = hashlib.sha256(",".join([SUITE, *BASE_PACKAGES]).encode()).hexdigest()[:8]
    tag = f"localhost/netgap-smoke/debian-python:{SUITE}-{arch}-{recipe}"
    if engine.image_exists(tag):
        return tag
    rootfs = CACHE / f"rootfs-{arch}"
    shutil.rmtree(rootfs, ignore_errors=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--arch={arch}",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(rootfs),
        apt_mirror(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise EngineError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}")
    # The build stage runs apt-get update itself; the downloaded packages are dead weight.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            "podman",
            "import",
            f"--arch={DEBIAN_ARCH[machine]}",
            "--change",
            'CMD ["/bin/bash"]',
            "-",
            tag,
        ],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        env=engine.env,
    )
    tar.wait(timeout=60)
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0:
        raise EngineError(f"podman import {tag}: {imported.stderr}")
    return tag


@dataclass(frozen=True)
class Python:
    """The base image's interpreter, as pip's platform flags name it."""

    version: str  # 3.11
    glibc: str  # 2.36
    machine: str  # x86_64

    @property
    def tag(self) -> str:
        return "cp" + self.version.replace(".", "")

    def pip_flags(self) -> list[str]:
        """pip download's flags for this interpreter: given --platform, pip takes that tag
        alone, so every manylinux this glibc runs is listed (2_5 = manylinux1, 2_12 =
        manylinux2010, 2_17 = manylinux2014 and their aliases)."""
        major, minor = (int(part) for part in self.glibc.split(".")[:2])
        assert major == 2, self.glibc
        platforms = [f"manylinux_2_{m}_{self.machine}" for m in range(minor, 4, -1)]
        platforms += [f"manylinux{alias}_{self.machine}" for alias in ("2014", "2010", "1")]
        flags = ["--python-version", self.version, "--implementation", "cp", "--abi", self.tag]
        for name in platforms:
            flags += ["--platform", name]
        return flags


def python_of(engine: Engine, image: str) -> Python:
    probe = (
        "import platform, sys; "
        "print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1], platform.machine())"
    )
    done = engine.run("run", "--rm", "--network=none", image, "python", "-c", probe, timeout=120)
    version, glibc, machine = done.stdout.split()
    return Python(version, glibc, machine)


def download_wheels(lock: Path, python: Python) -> Path:
    """Every file the lock pins for the image's Python, hash-checked, in a cached directory.
    Offline first: when the cache already holds them all, PyPI is not asked."""
    target = CACHE / "wheels" / f"{python.tag}-{python.machine}"
    target.mkdir(parents=True, exist_ok=True)
    flags = [
        "--no-deps",
        "--require-hashes",
        "-r",
        str(lock),
        "-d",
        str(target),
        "--progress-bar",
        "off",
        *python.pip_flags(),
    ]
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    offline = subprocess.run(
        [*pip, "--isolated", "--no-index", "--find-links", str(target), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if offline.returncode == 0:
        return target
    online = subprocess.run([*pip, *flags], capture_output=True, text=True, timeout=900)
    if online.returncode != 0:
        raise EngineError(f"pip download for {python}: exit {online.returncode}\n{online.stderr}")
    return target


@dataclass(frozen=True)
class Built:
    image_id: str
    seconds: float


def build(
    engine: Engine,
    root: Path,
    dockerfile: str,
    tag: str,
    base: str,
    wheels: Path,
    platform_: str | None = None,
    timeout: float = 900,
) -> Built:
    """podman build from the repository's own Dockerfile, with no index: the base and the
    wheel directory are the two build arguments the Dockerfiles take for this."""
    iidfile = CACHE / f"iid-{os.getpid()}-{dockerfile}"
    argv = [
        "build",
        "--file",
        str(root / dockerfile),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-context",
        f"wheels={wheels}",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--iidfile",
        str(iidfile),
        "--tag",
        tag,
    ]
    if platform_:
        argv += ["--platform", platform_]
    previous = engine.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    start = time.monotonic()
    engine.run(*argv, str(root), timeout=timeout)
    seconds = time.monotonic() - start
    image_id = iidfile.read_text().strip()
    iidfile.unlink()
    # The image this tag named before, unless it is the same: each change of the sources
    # would otherwise leave a few hundred MB behind in podman's store. Its parents that are
    # left dangling go too; the build stage's layers stay (the next build's cache).
    old = previous.stdout.strip()
    if previous.returncode == 0 and old and old not in image_id:
        engine.run("rmi", old, check=False)
    return Built(image_id, seconds)
