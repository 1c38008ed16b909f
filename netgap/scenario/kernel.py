"""Kernel mode of `netgap scenario` (--kernel, root only): the faults on a routed hop, by tc.

  root namespace              namespace ngs-hop-<suffix>            namespace ngs-api-<suffix>
  load -> web tier -> [proxy] -w ==veth== h-> (forwards) -g ==veth== a-> API tier
  collector <-------------------------- span export ---------------------------'

The web side stays in the root namespace: the web tier, the collector, the load and (without
netem) the latency proxy run as in the userspace mode, and the parent's health checks,
control calls, load and trace queries need no `ip netns exec`. The API tier runs in a
namespace of its own (`ip netns exec`), on 198.51.100.6, and every call to it is routed
through a hop namespace between two veth pairs (198.51.100.0/30 and .4/30, TEST-NET-2: they
never leave the pairs).

The faults sit on the hop's two egresses, so both directions are faulted (the proxy's
`both`): towards the API the traffic to the API's address and port, towards the web side the
traffic from the API's port. The rate cap is a tbf under an htb root whose u32 filters pick
that traffic, the loss an iptables `statistic` rule in the hop's mangle POSTROUTING (`-o` the
device, the netgap-fault comment): netgap.fault.tc's scoped plans, the web-bound one with
source ports. The latency is netem's when the kernel has it (then everything is in the
kernel); otherwise a `netgap fault proxy` in front of the API tier holds it, and only it.

Why a hop, not the tiers' own veth ends: as in the story, where tc sat on a node's overlay
interface, the packets are dropped and queued on their way *through* a router, so each
tier's TCP sees a lossy, slow network. A qdisc on a host's own egress is something else:
a drop there is reported to the sending socket, and a SYN-ACK retransmission dropped on the
API's own end made Linux reset the half-open connection (a 502 the user did not cause).

The API tier's span export crosses the veth too, to the collector's port: not the API's, so
it is not faulted. In the story the agent's own export crossed the broken overlay as well;
leaving it out is a deliberate simplification, so the traces of the fault arrive on time.

Nothing else on the host is touched: in the root namespace only our veth end and its route;
tc and iptables only in the hop namespace. `Overlay.teardown` (always run, signals held)
reverts the faults, sweeps any of our rules a signal cut short (older runs put them in the
root namespace), kills what still runs in the namespaces, deletes the veth pairs and the
namespaces.

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
HOP_PREFIX = "ngs-hop-"
# + suffix + w (web end, root namespace), h (its peer in the hop), g (the hop's end towards
# the API) or a (the API's end)
DEVICE_PREFIX = "ngs"
SUBNET = ipaddress.IPv4Network("198.51.100.0/29")  # TEST-NET-2: documentation only
WEB_SUBNET = ipaddress.IPv4Network("198.51.100.0/30")
API_SUBNET = ipaddress.IPv4Network("198.51.100.4/30")
WEB_ADDRESS = "198.51.100.1"
HOP_WEB_ADDRESS = "198.51.100.2"
HOP_API_ADDRESS = "198.51.100.5"
API_ADDRESS = "198.51.100.6"
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
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("sysctl", "procps")):
        if which(tool) is None:
            raise UsageError(f"--kernel needs {tool} (apt-get install {package})")
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
    kernel: Faults  # tc and iptables on the hop: rate and loss, and with netem the latency
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
    """One of the hop's devices: the plan for its egress, where its commands run, what was
    applied."""

    name: str  # web->api or api->web
    plan: tc.Plan
    run: tc.Runner
    injection: tc.Injection | None = None


@dataclass
class Overlay:
    """The namespaces, the veth pairs and the kernel faults on the hop."""

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
    def hop_namespace(self) -> str:
        return f"{HOP_PREFIX}{self.suffix}"

    @property
    def web_device(self) -> str:
        return f"{DEVICE_PREFIX}{self.suffix}w"

    @property
    def hop_web_device(self) -> str:
        return f"{DEVICE_PREFIX}{self.suffix}h"

    @property
    def hop_api_device(self) -> str:
        return f"{DEVICE_PREFIX}{self.suffix}g"

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

    def in_hop(self, argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        return self._recorded(("ip", "netns", "exec", self.hop_namespace, *argv))

    def _recorded(self, argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        """A fault command: run, and kept for the report."""
        self.commands.append(shlex.join(argv))
        return self.run(argv)

    def api_child_args(self, module: str) -> list[str]:
        """Child args (after `python -m`) running `python -m module` in the namespace."""
        return [__name__, self.namespace, module]

    # set-up and teardown

    def setup(self) -> None:
        api_ns, hop = self.namespace, self.hop_namespace
        self._must(("ip", "netns", "add", api_ns), usage=True)
        self._must(("ip", "netns", "add", hop))
        web, hop_web = self.web_device, self.hop_web_device
        hop_api, api = self.hop_api_device, self.api_device
        self._must(
            ("ip", "link", "add", web, "type", "veth", "peer", "name", hop_web, "netns", hop)
        )
        self._must(("ip", "-n", hop, "link", "add", hop_api, "type", "veth", "peer", "name", api))
        self._must(("ip", "-n", hop, "link", "set", "dev", api, "netns", api_ns))
        self._address(None, web, WEB_ADDRESS, WEB_SUBNET)
        self._address(hop, hop_web, HOP_WEB_ADDRESS, WEB_SUBNET)
        self._address(hop, hop_api, HOP_API_ADDRESS, API_SUBNET)
        self._address(api_ns, api, API_ADDRESS, API_SUBNET)
        self._must(("ip", "route", "add", str(API_SUBNET), "via", HOP_WEB_ADDRESS, "dev", web))
        self._must(("ip", "-n", api_ns, "route", "add", "default", "via", HOP_API_ADDRESS))
        self._must(("ip", "netns", "exec", hop, "sysctl", "-qw", "net.ipv4.ip_forward=1"))

    def _address(
        self, namespace: str | None, device: str, address: str, net: ipaddress.IPv4Network
    ) -> None:
        """`device` up with `address` on `net`, and its namespace's loopback up."""
        where: tc.Argv = ("ip",) if namespace is None else ("ip", "-n", namespace)
        self._must((*where, "addr", "add", f"{address}/{net.prefixlen}", "dev", device))
        self._must((*where, "link", "set", "dev", device, "up"))
        if namespace is not None:
            self._must((*where, "link", "set", "dev", "lo", "up"))

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
        namespaces = (self.namespace, self.hop_namespace)
        for namespace in namespaces:
            self._kill_all_in(namespace)
        # Deleting one end deletes the pair at once (a namespace's own teardown is lazy).
        for argv in (
            ("ip", "link", "del", self.web_device),
            ("ip", "-n", self.hop_namespace, "link", "del", self.hop_api_device),
            *(("ip", "netns", "del", namespace) for namespace in namespaces),
        ):
            self._say(f"+ {shlex.join(argv)}")
            self.run(argv)
        if self.run(("ip", "link", "show", "dev", self.web_device)).returncode == 0:
            problems.append(f"{self.web_device} is still there")
        listed = self.run(("ip", "netns", "list")).stdout.split()
        problems += [f"namespace {name} is still there" for name in namespaces if name in listed]
        return problems

    def _kill_all_in(self, namespace: str) -> None:
        listed = self.run(("ip", "netns", "pids", namespace))
        for pid in listed.stdout.split() if listed.returncode == 0 else []:
            with contextlib.suppress(ValueError, OSError):
                self._say(f"kill -KILL {int(pid)}  # left in {namespace}")
                os.kill(int(pid), signal.SIGKILL)

    def _sweep_rules(self) -> list[str]:
        """Our rules in the root namespace (where runs before the hop put them) that a signal
        may have left: those with the netgap-fault comment and `-o` our web end. The hop's own
        go with its namespace."""
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
        """The plans for `faults` (the kernel's part) on each of the hop's devices that its
        direction faults."""
        api = ipaddress.ip_network(f"{API_ADDRESS}/32")
        web = ipaddress.ip_network(f"{WEB_ADDRESS}/32")
        netem = self.netem.available
        sides = []
        if faults.applies_upstream():
            scope = tc.Scope((api,), self.api_port)
            plan = tc.plan(faults, self.hop_api_device, scope, netem=netem, mtu=MTU)
            sides.append(Side("web->api", plan, self.in_hop))
        if faults.applies_downstream():
            scope = tc.Scope((web,), self.api_port)
            plan = tc.plan(faults, self.hop_web_device, scope, netem=netem, mtu=MTU)
            note = f"only egress to {web} from port {self.api_port} (TCP and UDP)"
            sides.append(Side("api->web", by_source_port(plan, note), self.in_hop))
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
            f"({self.web_device}), routed through {self.hop_namespace}"
        )
        how = "rate and loss by tc/iptables" if self.latency_via_proxy else "all faults by netem"
        text = f"kernel mode: {where}; {how} on both of the hop's egresses, scoped to the API's"
        return text + f" port {self.api_port} (its span export is not faulted)"

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
            "hop_namespace": self.hop_namespace,
            "web_device": self.web_device,
            "api_device": self.api_device,
            "hop_devices": [self.hop_web_device, self.hop_api_device],
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
    """Probe netem, build the namespaces and the veth pairs, and always take them down again
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
    suffixes = dict.fromkeys(
        line.split()[0].removeprefix(prefix)
        for line in listed.stdout.splitlines()
        for prefix in (NAMESPACE_PREFIX, HOP_PREFIX)
        if line.startswith(prefix)
    )
    ours = [f"{NAMESPACE_PREFIX}{suffix}" for suffix in suffixes]
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
