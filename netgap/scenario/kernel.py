"""Kernel mode of `netgap scenario` (--kernel, root only): the faults on a veth hop, by tc.

  root namespace                                    namespace ngs-api-<suffix>
  load -> web tier -> [latency proxy] --ngs<suffix>w ==veth== ngs<suffix>a--> API tier
  collector <------------------------------- span export -----------------------'

The web side of the veth pair stays in the root namespace: the web tier, the collector, the
load and (without netem) the latency proxy run as in the userspace mode, and the parent's
health checks, control calls, load and trace queries need no `ip netns exec`; only the API
tier runs in a namespace of its own (`ip netns exec`), on 198.51.100.2, and every call to it
crosses the veth from 198.51.100.1 (TEST-NET-2, a /30 that never leaves the pair). A second
namespace for the web side would put the same veth hop between the tiers and only add
plumbing.

Each end shapes its own egress, so both directions are faulted (the proxy's `both`): on the
web end the traffic to the API's address and port, on the API end the traffic from the API's
port back to the web side. The rate cap is a tbf under an htb root whose u32 filters pick
that traffic, the loss an iptables `statistic` rule in mangle POSTROUTING (`-o` the veth end,
the netgap-fault comment): netgap.fault.tc's scoped plans, the API end's with source ports.
The latency is netem's when the kernel has it (then everything is in the kernel); otherwise a
`netgap fault proxy` in front of the API tier holds it, and only it.

The API tier's span export crosses the veth too, to the collector's port: not the API's, so
it is not faulted. In the story the agent's own export crossed the broken overlay as well;
leaving it out is a deliberate simplification, so the traces of the fault arrive on time.

Nothing else on the host is touched: tc only on our veth end, iptables rules only with `-o`
our veth end. `Overlay.teardown` (always run, signals held) reverts the faults, sweeps any of
our rules a signal cut short, kills what still runs in the namespace, deletes the veth pair
and the namespace.

Only SIGKILL (or a machine gone mid-run) leaves anything behind. A run holds an flock on
/run/netgap/<namespace>.lock while its overlay exists; the kernel drops it when the process
dies, so the next run (and `--kernel --clear`) can tell a killed run's leftovers, which it
takes down, from a live run's, which it leaves alone and refuses to share the subnet with.
"""

import contextlib
import fcntl
import io
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

from netgap.errors import NetgapError, UsageError
from netgap.fault import tc
from netgap.fault.spec import Faults
from netgap.scenario import model

NAMESPACE_PREFIX = "ngs-api-"
DEVICE_PREFIX = "ngs"  # + suffix + w (web end, root namespace) or a (API end)
SUBNET = ipaddress.IPv4Network("198.51.100.0/30")  # TEST-NET-2: documentation only
WEB_ADDRESS = "198.51.100.1"
API_ADDRESS = "198.51.100.2"
MTU = 1500  # a veth's default
LOCK_DIR = Path("/run/netgap")  # tmpfs: emptied by a reboot, as the namespaces are
NO_NETEM = "latency via the userspace proxy: this kernel has no netem"
EXPORT_NOTE = (
    "only the calls to the API's port are faulted, not the API tier's span export to the "
    "collector (in the story the agent's own export crossed the broken overlay too: a "
    "deliberate simplification)"
)

Say = Callable[[str], None]


# -- refusing early


def preflight(
    faults: Faults,
    say: Say,
    *,
    euid: Callable[[], int] | None = None,
    which: Callable[[str], str | None] | None = None,
    run: tc.Runner | None = None,
) -> None:
    """UsageError (one line, exit 2) when kernel mode cannot run here. Takes down what a
    killed run left first (it would hold the subnet), saying so."""
    euid = euid or os.geteuid
    which = which or shutil.which
    run = run or tc.run_command
    if euid() != 0:
        raise UsageError("--kernel needs root (network namespaces, tc and iptables); run as root")
    for tool in ("ip", "tc"):
        if which(tool) is None:
            raise UsageError(f"--kernel needs {tool} (apt-get install iproute2)")
    if faults.reset:
        raise UsageError("--kernel cannot reset connections (tc cannot); leave out reset")
    listed = run(("ip", "netns", "list"))
    if listed.returncode != 0:
        raise UsageError(f"--kernel needs network namespaces: ip netns: {_line(listed.stderr)}")
    if faults.loss:
        if which("iptables") is None:
            raise UsageError("--kernel needs iptables for the loss (apt-get install iptables)")
        rules = run(("iptables", "-t", "mangle", "-S", "POSTROUTING"))
        if rules.returncode != 0:
            raise UsageError(f"--kernel needs iptables' mangle table: {_line(rules.stderr)}")
    clear_leftovers(say, run)
    taken = run(("ip", "-o", "-4", "addr", "show", "to", str(SUBNET)))
    if taken.returncode == 0 and taken.stdout.strip():
        device = taken.stdout.split()[1].split("@")[0]
        whose = (
            "another netgap scenario --kernel is running"
            if device.startswith(DEVICE_PREFIX)
            else "not netgap's: take it down or run elsewhere"
        )
        raise UsageError(f"--kernel uses {SUBNET}, which {device} has already ({whose})")


def _line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


# -- which fault goes where


@dataclass(frozen=True)
class Split:
    kernel: Faults  # tc and iptables on the veth: rate and loss, and with netem the latency
    proxy: Faults  # the userspace proxy: the latency and jitter, when there is no netem


def split(faults: Faults, netem: bool) -> Split:
    if netem:
        return Split(kernel=faults, proxy=Faults())
    kernel = replace(faults, latency_s=0.0, jitter_s=0.0)
    proxy = Faults(latency_s=faults.latency_s, jitter_s=faults.jitter_s)
    return Split(kernel=kernel, proxy=proxy)


def injector(netem: bool) -> model.Injector:
    return model.NETEM if netem else model.TC_PROXY_LATENCY


def by_source_port(plan: tc.Plan, note: str) -> tc.Plan:
    """A plan scoped with `Scope(networks, port)` (a destination port) made to match the
    source port instead: the API end's egress is the API's answers, from its port."""

    def swap(argv: tc.Argv) -> tc.Argv:
        words = list(argv)
        for i, word in enumerate(words):
            if word == "--dport":
                words[i] = "--sport"
            elif word == "dport" and i > 0 and words[i - 1] in ("ip", "ip6"):
                words[i] = "sport"
        return tuple(words)

    steps = tuple(
        tc.Step(swap(step.argv), None if step.undo is None else swap(step.undo))
        for step in plan.steps
    )
    return tc.Plan(plan.device, steps, (note, *plan.notes[1:]))


# -- the overlay


@dataclass
class Side:
    """One veth end: the plan for its egress, where its commands run, what was applied."""

    name: str  # web->api or api->web
    plan: tc.Plan
    run: tc.Runner
    injection: tc.Injection | None = None


@dataclass
class Overlay:
    """The namespace, the veth pair and the kernel faults on it."""

    api_port: int
    netem: tc.NetemProbe
    log: TextIO
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    run: tc.Runner = tc.run_command
    applied: list[Side] = field(default_factory=list)
    kernel_faults: Faults = field(default_factory=Faults)
    commands: list[str] = field(default_factory=list)  # every tc/iptables command run
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def namespace(self) -> str:
        return f"{NAMESPACE_PREFIX}{self.suffix}"

    @property
    def web_device(self) -> str:
        return f"{DEVICE_PREFIX}{self.suffix}w"

    @property
    def api_device(self) -> str:
        return f"{DEVICE_PREFIX}{self.suffix}a"

    @property
    def latency_via_proxy(self) -> bool:
        return not self.netem.available

    @property
    def injector(self) -> model.Injector:
        return injector(self.netem.available)

    def split(self, faults: Faults) -> Split:
        return split(faults, self.netem.available)

    def in_namespace(self, argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        return self._recorded(("ip", "netns", "exec", self.namespace, *argv))

    def _recorded(self, argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        """A fault command: run, and kept for the report."""
        self.commands.append(shlex.join(argv))
        return self.run(argv)

    def api_child_args(self, module: str) -> list[str]:
        """Child args (after `python -m`) running `python -m module` in the namespace."""
        return [__name__, self.namespace, module]

    # set-up and teardown

    def setup(self) -> None:
        ns, web, api = self.namespace, self.web_device, self.api_device
        prefix = SUBNET.prefixlen
        self._must(("ip", "netns", "add", ns), usage=True)
        self._must(("ip", "link", "add", web, "type", "veth", "peer", "name", api, "netns", ns))
        self._must(("ip", "addr", "add", f"{WEB_ADDRESS}/{prefix}", "dev", web))
        self._must(("ip", "link", "set", "dev", web, "up"))
        for argv in (
            ("ip", "addr", "add", f"{API_ADDRESS}/{prefix}", "dev", api),
            ("ip", "link", "set", "dev", api, "up"),
            ("ip", "link", "set", "dev", "lo", "up"),
        ):
            self._must(("ip", "-n", ns, *argv[1:]))

    def _must(self, argv: tc.Argv, usage: bool = False) -> None:
        self._say(f"+ {shlex.join(argv)}")
        done = self.run(argv)
        if done.returncode != 0:
            error = UsageError if usage else NetgapError
            raise error(f"--kernel: {shlex.join(argv)} failed: {_line(done.stderr)}")

    def teardown(self) -> list[str]:
        """Everything back as it was; the problems, if any (never raises for them)."""
        problems = self.clear_faults()
        problems += self._sweep_rules()
        listed = self.run(("ip", "netns", "pids", self.namespace))
        for pid in listed.stdout.split() if listed.returncode == 0 else []:
            with contextlib.suppress(ValueError, OSError):
                self._say(f"kill -KILL {int(pid)}  # left in {self.namespace}")
                os.kill(int(pid), signal.SIGKILL)
        # Deleting one end deletes the pair at once (the namespace's own teardown is lazy).
        for argv in (
            ("ip", "link", "del", self.web_device),
            ("ip", "netns", "del", self.namespace),
        ):
            self._say(f"+ {shlex.join(argv)}")
            self.run(argv)
        if self.run(("ip", "link", "show", "dev", self.web_device)).returncode == 0:
            problems.append(f"{self.web_device} is still there")
        if self.namespace in self.run(("ip", "netns", "list")).stdout.split():
            problems.append(f"namespace {self.namespace} is still there")
        return problems

    def _sweep_rules(self) -> list[str]:
        """Our rules a signal may have left between a command and its bookkeeping: those with
        the netgap-fault comment and `-o` our web end (the API end's go with the namespace)."""
        listed = self.run(("iptables", "-t", "mangle", "-S", "POSTROUTING"))
        if listed.returncode != 0:
            return []
        ours = [
            line for line in listed.stdout.splitlines() if f" -o {self.web_device} " in f" {line} "
        ]
        problems = []
        for argv in tc.clear_argvs("", {"iptables": "\n".join(ours)}):
            self._say(f"+ {shlex.join(argv)}")
            done = self.run(argv)
            if done.returncode != 0:
                problems.append(f"{shlex.join(argv)}: {_line(done.stderr)}")
        return problems

    # the faults

    def sides(self, faults: Faults) -> list[Side]:
        """The plans for `faults` (the kernel's part) on each end that its direction faults."""
        api = ipaddress.ip_network(f"{API_ADDRESS}/32")
        web = ipaddress.ip_network(f"{WEB_ADDRESS}/32")
        netem = self.netem.available
        sides = []
        if faults.applies_upstream():
            scope = tc.Scope((api,), self.api_port)
            plan = tc.plan(faults, self.web_device, scope, netem=netem, mtu=MTU)
            sides.append(Side("web->api", plan, self._recorded))
        if faults.applies_downstream():
            scope = tc.Scope((web,), self.api_port)
            plan = tc.plan(faults, self.api_device, scope, netem=netem, mtu=MTU)
            note = f"only egress to {web} from port {self.api_port} (TCP and UDP)"
            sides.append(Side("api->web", by_source_port(plan, note), self.in_namespace))
        return sides

    def set_faults(self, faults: Faults) -> None:
        """The kernel's part of `faults` in force, whatever was before (called off the event
        loop; teardown waits for it). StepFailed when a command fails."""
        kernel = self.split(faults).kernel
        with self._lock:
            problems = self._revert()
            if problems:
                raise NetgapError("could not revert the kernel faults: " + "; ".join(problems))
            self.kernel_faults = Faults()
            if not kernel.active:
                return
            for side in self.sides(kernel):
                side.injection = tc.Injection(side.plan, self.log, side.run)
                self.applied.append(side)
                side.injection.apply()
            self.kernel_faults = kernel

    def clear_faults(self) -> list[str]:
        with self._lock:
            self.kernel_faults = Faults()
            return self._revert()

    def _revert(self) -> list[str]:
        problems = []
        while self.applied:
            injection = self.applied.pop().injection
            if injection is not None:
                problems += injection.revert()
        return problems

    def _say(self, line: str) -> None:
        print(line, file=self.log, flush=True)

    # describing it

    def describe(self) -> str:
        where = (
            f"API tier in network namespace {self.namespace} on {API_ADDRESS} "
            f"({self.api_device}), the rest in the root namespace on {WEB_ADDRESS} "
            f"({self.web_device})"
        )
        how = "rate and loss by tc/iptables" if self.latency_via_proxy else "all faults by netem"
        text = f"kernel mode: {where}; {how} on both veth ends, scoped to the API's port"
        return text + f" {self.api_port} (its span export is not faulted)"

    def to_json(self, faults: Faults) -> dict[str, Any]:
        parts = self.split(faults)
        sides = self.sides(parts.kernel) if parts.kernel.active else []
        notes = [NO_NETEM] if self.latency_via_proxy else []
        notes.append(EXPORT_NOTE)
        notes += [
            f"{side.name} on {side.plan.device}: {'; '.join(side.plan.notes)}" for side in sides
        ]
        return {
            "namespace": self.namespace,
            "web_device": self.web_device,
            "api_device": self.api_device,
            "web_address": WEB_ADDRESS,
            "api_address": API_ADDRESS,
            "api_port": self.api_port,
            "netem": self.netem.available,
            "netem_probe": self.netem.how,
            "latency_via": "userspace proxy" if self.latency_via_proxy else "netem",
            "kernel_faults": parts.kernel.describe(),
            "proxy_faults": parts.proxy.describe(),
            "notes": notes,
            "plan": {
                side.name: {"apply": side.plan.apply_lines(), "revert": side.plan.revert_lines()}
                for side in sides
            },
            "commands": list(self.commands),
        }


@contextlib.contextmanager
def overlay(api_port: int, log_path: Path, say: Say) -> Iterator[Overlay]:
    """Probe netem, build the namespace and the veth pair, and always take them down again
    (signals held meanwhile: a second Ctrl-C cannot leave half of it behind)."""
    with log_path.open("a") as log, contextlib.ExitStack() as claims:
        lab: Overlay | None = None
        try:
            with tc.stop_signals_held():
                lab = Overlay(api_port, tc.probe_netem(), log)
                claims.enter_context(claimed(lab.namespace))
                lab.setup()
                interrupted = tc.stop_pending()
            if interrupted:
                raise KeyboardInterrupt
            say(lab.describe())
            say(f"netem: {lab.netem.how}")
            if lab.latency_via_proxy:
                say(NO_NETEM)
            yield lab
        finally:
            if lab is not None:
                with tc.stop_signals_held():
                    problems = lab.teardown()
                if problems:
                    say("warning: could not undo everything: " + "; ".join(problems))


# -- which run owns an overlay: an flock held for its lifetime


def lock_path(namespace: str) -> Path:
    return LOCK_DIR / f"{namespace}.lock"


@contextlib.contextmanager
def claimed(namespace: str) -> Iterator[None]:
    """Marks the overlay as a live run's until the block ends or the process dies."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    path = lock_path(namespace)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def is_live(namespace: str) -> bool:
    """Whether a running process holds the namespace's claim (no lock file: nobody does)."""
    try:
        with lock_path(namespace).open("r") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


def clear_leftovers(say: Say, run: tc.Runner = tc.run_command) -> list[str]:
    """Take down what a kernel-mode run killed outright (SIGKILL) left behind: its namespaces
    with their veth pairs and whatever runs in them, and its netgap-fault iptables rules on
    our veths, also those whose veth is already gone. A live run's are left alone. The
    namespaces taken down."""
    listed = run(("ip", "netns", "list"))
    ours = [
        line.split()[0] for line in listed.stdout.splitlines() if line.startswith(NAMESPACE_PREFIX)
    ]
    live = [name for name in ours if is_live(name)]
    for name in live:
        say(f"leaving {name} alone: its run is still going")
    names = [name for name in ours if name not in live]
    for name in names:
        lab = Overlay(0, tc.NetemProbe(False, "not probed"), io.StringIO(), run=run)
        lab.suffix = name.removeprefix(NAMESPACE_PREFIX)
        say(f"taking down {name} and {lab.web_device} (left by a killed run)")
        for problem in lab.teardown():
            say(f"warning: {problem}")
        lock_path(name).unlink(missing_ok=True)
    live_devices = {f"{DEVICE_PREFIX}{name.removeprefix(NAMESPACE_PREFIX)}w" for name in live}
    rules = run(("iptables", "-t", "mangle", "-S", "POSTROUTING"))
    ours = [
        line
        for line in (rules.stdout.splitlines() if rules.returncode == 0 else [])
        if f" -o {DEVICE_PREFIX}" in line
        and tc.COMMENT in line
        and line.split(" -o ")[1].split()[0] not in live_devices
    ]
    for argv in tc.clear_argvs("", {"iptables": "\n".join(ours)}):
        say(f"+ {shlex.join(argv)}")
        run(argv)
    return names


# -- `python -m netgap.scenario.kernel NAMESPACE MODULE [ARGS]`: what the API tier's Child runs


def exec_in_namespace(args: list[str]) -> NoReturn:
    """Becomes `python -m MODULE ARGS` inside the namespace (same process: signals, exit code
    and the parent-death signal carry over)."""
    namespace, *command = args
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-m", *command]
    os.execvp("ip", argv)  # noqa: S606, S607 (an argv, no shell; iproute2's ip from PATH)


if __name__ == "__main__":
    exec_in_namespace(sys.argv[1:])
