"""Faults in the kernel: tc and iptables command plans, and a runner that applies and reverts them.

A plan is the ordered commands that put a `Faults` value on one interface's egress, each with
the command that undoes it. Comcast's recipe, made removable and scoped:

  unscoped  one root qdisc: netem (delay, jitter, loss, and the rate cap as netem's `rate`, as
            Comcast does), or tbf when only a rate is asked for.
  scoped    root htb with no default class: traffic no filter picks goes out through htb's
            direct queue, unshaped (what Chaos Mesh's 4-band prio priomap is for), and u32
            filters send the destination CIDR(s) (and port, TCP or UDP) to class :4, whose
            child is the netem or tbf. htb rather than prio: every kernel has it, including
            this project's build machine, whose kernel lacks sch_prio (and sch_netem).

Every qdisc we add hangs under the root handle 4e47: ("NG"), so one `tc qdisc del dev D root
handle 4e47:` removes all of it, filters included, and the kernel refuses it when the root is
someone else's. iptables rules carry the comment `netgap-fault`. `clear` finds leftovers by
those two marks.

Kernels without netem (`netem=False`): the rate cap is a tbf, loss is an iptables rule dropping
packets at random (`-m statistic`) in mangle POSTROUTING, and latency cannot be had: a plan
asking for it is refused (the local proxy, `netgap fault proxy`, does latency in userspace).
"""

import contextlib
import ipaddress
import itertools
import math
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from netgap.errors import NetgapError, UsageError
from netgap.fault.spec import Faults, format_rate

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Argv = tuple[str, ...]

HANDLE = "4e47"  # root qdisc major: "NG" in ASCII, unlikely to be anyone else's
CHILD_HANDLE = "4e48"  # the netem or tbf under the faulted class (scoped plans)
FAULTED_CLASS = f"{HANDLE}:4"
COMMENT = "netgap-fault"
# The faulted class must not shape by itself (its child does): a rate no interface reaches.
# quantum: htb derives it from the rate and warns when that is huge; it only matters for
# borrowing between classes, which nothing here does.
UNSHAPED_CLASS = ("rate", "100gbit", "quantum", "60000")
# htb's direct queue defaults to the device's txqueuelen, which is 0 on some virtual devices.
DIRECT_QLEN = "1000"
NETEM_DEFAULT_LIMIT = 1000  # packets, tc's default
# netem holds each packet for the delay: its queue must hold twice what flows meanwhile, or it
# drops packets nobody asked to lose. Uncapped, assume this much traffic in full-size packets.
ASSUMED_LINE_BPS = 1_000_000_000
FULL_PACKET_BYTES = 1500
# tbf's queue holds at least this long at the capped rate (Chaos Mesh's advice: limit of at
# least 2 x rate x latency, here with a floor of half a second of latency).
TBF_MIN_QUEUE_S = 0.5
COMMAND_TIMEOUT_S = 30.0
ROUTE_DEVICE = re.compile(r"\bdev\s+(\S+)")
# Overlay and bridge devices of common CNIs, most specific first.
CNI_DEVICES = ("tunl0", "vxlan.calico", "flannel.1", "cni0")
_IFF_UP = 0x1
PROBE_PREFIX = "ngprobe"  # + 6 hex digits; its veth peer adds a "p"
_PROBE_LINK = re.compile(rf"^\d+: ({PROBE_PREFIX}[0-9a-f]{{6}})[@:]", re.MULTILINE)
_NETEM_MISSING = ("Specified qdisc kind is unknown", "Specified qdisc not found")


class FaultPlanError(UsageError):
    """Faults this kernel, or the kernel way at all, cannot apply; the message says what can."""


@dataclass(frozen=True)
class Scope:
    """Which egress traffic is faulted: all of it, or that to these networks (and port)."""

    networks: tuple[Network, ...] = ()
    port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not self.networks:
            raise UsageError(
                "a target port needs a target network",
                hint="add --target CIDR (0.0.0.0/0 for every IPv4 destination)",
            )

    @property
    def scoped(self) -> bool:
        return bool(self.networks)


@dataclass(frozen=True)
class Step:
    """One command, and the one that undoes it; None when an earlier step's undo covers it
    (a class, child qdisc or filter goes with the root qdisc it hangs under)."""

    argv: Argv
    undo: Argv | None = None


@dataclass(frozen=True)
class Plan:
    device: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    def apply_lines(self) -> list[str]:
        return [shlex.join(step.argv) for step in self.steps]

    def revert_lines(self) -> list[str]:
        return [shlex.join(step.undo) for step in reversed(self.steps) if step.undo]


def plan(
    faults: Faults,
    device: str,
    scope: Scope | None = None,
    *,
    netem: bool = True,
    mtu: int = 1500,
) -> Plan:
    """The commands that put `faults` on `device`'s egress, netem or (netem=False) without it."""
    scope = scope or Scope()
    _check_kernel_can(faults, netem)
    use_netem = netem and bool(faults.latency_s or faults.loss)
    if use_netem:
        qdisc: list[str] | None = netem_args(faults)
    elif faults.rate_bps:
        qdisc = tbf_args(faults.rate_bps, 0.0, mtu)
    else:
        qdisc = None
    steps: list[Step] = []
    if qdisc is not None:
        steps += _tc_steps(device, qdisc, scope)
    if faults.loss and not use_netem:
        steps += _loss_rule_steps(device, faults.loss, scope)
    return Plan(device, tuple(steps), tuple(_notes(faults, scope, netem, use_netem)))


def _check_kernel_can(faults: Faults, netem: bool) -> None:
    if faults.reset:
        raise FaultPlanError(
            "reset: tc cannot close connections; the local proxy (netgap fault proxy) can"
        )
    if not faults.active:
        raise FaultPlanError("no fault given: use --latency, --rate, --loss or --preset")
    if not netem and faults.latency_s:
        raise FaultPlanError(
            "latency needs netem (sch_netem): this kernel lacks it, or --no-netem; rate and loss "
            "work without it, and the local proxy (netgap fault proxy) does latency in userspace"
        )


def netem_args(faults: Faults) -> list[str]:
    """`netem delay 500ms loss random 1% rate 50kbit limit 1000`: the fields that are set."""
    args = ["netem"]
    if faults.latency_s:
        args += ["delay", tc_time(faults.latency_s)]
        if faults.jitter_s:
            args.append(tc_time(faults.jitter_s))
    if faults.loss:
        args += ["loss", "random", percent(faults.loss)]
    if faults.rate_bps:
        args += ["rate", format_rate(faults.rate_bps)]
    return [*args, "limit", str(netem_limit_packets(faults))]


def netem_limit_packets(faults: Faults) -> int:
    held_s = faults.latency_s + faults.jitter_s
    bytes_per_s = (faults.rate_bps or ASSUMED_LINE_BPS) / 8
    # round first: 0.1 + 0.02 s is 0.12000000000000001 s, which must not cost a packet more
    needed = math.ceil(round(2 * bytes_per_s * held_s / FULL_PACKET_BYTES, 6))
    return max(NETEM_DEFAULT_LIMIT, needed)


def tbf_args(rate_bps: int, latency_s: float, mtu: int) -> list[str]:
    burst = tbf_burst_bytes(rate_bps, mtu)
    limit = tbf_limit_bytes(rate_bps, latency_s, mtu)
    return ["tbf", "rate", format_rate(rate_bps), "burst", str(burst), "limit", str(limit)]


def tbf_burst_bytes(rate_bps: int, mtu: int) -> int:
    """One full packet with its link header (a bigger one would never pass), or 10 ms at the
    rate when that is more; small, so small packets do not slip through at line rate for long."""
    return max(mtu + 100, math.ceil(rate_bps / 8 / 100))


def tbf_limit_bytes(rate_bps: int, latency_s: float, mtu: int) -> int:
    """Bytes queued for tokens: at least 2 x rate x latency (a smaller queue drops heavily)."""
    queued = math.ceil(round(2 * rate_bps / 8 * max(latency_s, TBF_MIN_QUEUE_S), 6))
    return max(queued, 2 * tbf_burst_bytes(rate_bps, mtu))


def _tc_steps(device: str, qdisc: list[str], scope: Scope) -> list[Step]:
    root = ("tc", "qdisc", "add", "dev", device, "root", "handle", f"{HANDLE}:")
    root_undo = ("tc", "qdisc", "del", "dev", device, "root", "handle", f"{HANDLE}:")
    if not scope.scoped:
        return [Step((*root, *qdisc), root_undo)]
    faulted_class: Argv = ("tc", "class", "add", "dev", device, "parent", f"{HANDLE}:")
    faulted_class += ("classid", FAULTED_CLASS, "htb", *UNSHAPED_CLASS)
    child: Argv = ("tc", "qdisc", "add", "dev", device, "parent", FAULTED_CLASS)
    child += ("handle", f"{CHILD_HANDLE}:", *qdisc)
    return [
        Step((*root, "htb", "direct_qlen", DIRECT_QLEN), root_undo),
        Step(faulted_class),
        Step(child),
        *(Step(argv) for argv in filter_argvs(device, scope)),
    ]


def filter_argvs(device: str, scope: Scope) -> list[Argv]:
    """u32 filters sending the scope's traffic to the faulted class: one per network.

    `match ip dport` reads the 16 bits after the source port at a fixed offset (no IP options,
    no IPv6 extension headers), so it matches TCP and UDP alike, as Comcast's rules do.
    """
    argvs = []
    for network in scope.networks:
        v6 = network.version == 6
        proto, prio, key = ("ipv6", "2", "ip6") if v6 else ("ip", "1", "ip")
        match = ["match", key, "dst", str(network)]
        if scope.port is not None:
            match += ["match", key, "dport", str(scope.port), "0xffff"]
        head = ("tc", "filter", "add", "dev", device, "parent", f"{HANDLE}:", "protocol", proto)
        argvs.append((*head, "prio", prio, "u32", *match, "flowid", FAULTED_CLASS))
    return argvs


def _loss_rule_steps(device: str, loss: float, scope: Scope) -> list[Step]:
    """iptables rules dropping `loss` of the scope's packets, inserted first in mangle
    POSTROUTING (where forwarded and local traffic both pass) so no earlier ACCEPT skips them."""
    steps = []
    for binary, spec in loss_rule_specs(device, loss, scope):
        table = (binary, "-t", "mangle")
        steps.append(
            Step((*table, "-I", "POSTROUTING", *spec), (*table, "-D", "POSTROUTING", *spec))
        )
    return steps


def loss_rule_specs(device: str, loss: float, scope: Scope) -> list[tuple[str, Argv]]:
    """(iptables or ip6tables, rule spec) per network and, with a port, per protocol.

    Unscoped: IPv4 only, since an ip6tables failure on an IPv4-only node would abort the fault.
    """
    drop: Argv = ("-m", "statistic", "--mode", "random", "--probability", decimal(loss))
    drop += ("-m", "comment", "--comment", COMMENT, "-j", "DROP")
    protocols: list[Argv] = [()]
    if scope.port is not None:
        protocols = [("-p", name, "--dport", str(scope.port)) for name in ("tcp", "udp")]
    if not scope.networks:
        return [("iptables", ("-o", device, *drop))]
    return [
        (
            "ip6tables" if network.version == 6 else "iptables",
            ("-o", device, "-d", str(network), *protocol, *drop),
        )
        for network in scope.networks
        for protocol in protocols
    ]


def _notes(faults: Faults, scope: Scope, netem: bool, use_netem: bool) -> list[str]:
    notes = []
    if scope.scoped:
        notes.append(f"only egress to {', '.join(map(str, scope.networks))}" + _port(scope))
    else:
        notes.append("all egress")
    if use_netem:
        notes.append("netem: " + faults.describe().rsplit(" (", 1)[0])
    elif faults.rate_bps:
        notes.append(f"tbf: rate {format_rate(faults.rate_bps)}")
    if faults.loss and not use_netem:
        notes.append(
            f"iptables statistic: loss {percent(faults.loss)}"
            + ("" if scope.scoped else ", IPv4 only")
        )
    if not netem:
        notes.append("planned for a kernel without netem")
    return notes


def _port(scope: Scope) -> str:
    return "" if scope.port is None else f" port {scope.port} (TCP and UDP)"


def tc_time(seconds: float) -> str:
    """tc's TIME in whole microseconds (netem's resolution as tc parses it): 500ms, 1500us."""
    us = max(1, round(seconds * 1e6))
    return f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"


def percent(fraction: float) -> str:
    return f"{decimal(fraction * 100)}%"


def decimal(value: float) -> str:
    # .10g: 0.07 * 100 is 7.000000000000001, printed 7; strtod (tc, iptables) reads exponents
    return f"{value:.10g}"


def parse_network(text: str) -> Network:
    """`10.0.0.0/24`, `10.0.0.5` (a /32) or an IPv6 prefix; host bits are masked off."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not a CIDR like 10.0.0.0/24 or an IP address: {text!r}") from None


# -- what is on this machine


def pick_interface(links: Mapping[str, bool], default_route: str) -> str | None:
    """The first CNI device that is up (`links`: name -> admin up), else the default route's.

    Up, because loading the ipip module creates tunl0 whether or not Calico uses IPIP; Calico
    brings it up only when it does.
    """
    for name in CNI_DEVICES:
        if links.get(name):
            return name
    match = ROUTE_DEVICE.search(default_route)
    return match.group(1) if match else None


def detect_interface(sys_class_net: Path = Path("/sys/class/net")) -> str:
    links = {path.name: _is_up(path) for path in sys_class_net.iterdir()}
    route = run_command(("ip", "route", "show", "default"))
    device = pick_interface(links, route.stdout if route.returncode == 0 else "")
    if device is None:
        raise NetgapError(
            f"found no interface to fault (none of {', '.join(CNI_DEVICES)}, no default route)",
            hint="pass --device",
        )
    return device


def _is_up(path: Path) -> bool:
    try:
        return bool(int((path / "flags").read_text(), 16) & _IFF_UP)
    except (OSError, ValueError):
        return False


def device_mtu(device: str, sys_class_net: Path = Path("/sys/class/net")) -> int:
    try:
        return int((sys_class_net / device / "mtu").read_text())
    except (OSError, ValueError):
        raise NetgapError(f"no interface {device!r} here", hint="check --device") from None


@dataclass(frozen=True)
class NetemProbe:
    available: bool
    how: str


def probe_netem() -> NetemProbe:
    """Whether this kernel has netem. Loaded already, or else tried on a throwaway veth pair
    (a dummy device may be missing too, and needs no more than NET_ADMIN either way)."""
    if Path("/sys/module/sch_netem").exists():
        return NetemProbe(True, "sch_netem is loaded")
    name = f"{PROBE_PREFIX}{secrets.token_hex(3)}"
    made = run_command(("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"))
    if made.returncode != 0:
        # Cannot tell: try netem, and a kernel without it makes the apply fail and revert.
        return NetemProbe(True, f"could not probe ({made.stderr.strip()}); trying netem")
    try:
        tried = run_command(("tc", "qdisc", "add", "dev", name, "root", "netem", "delay", "1ms"))
    finally:
        run_command(("ip", "link", "del", name))
    if tried.returncode == 0:
        return NetemProbe(True, "netem qdisc added on a probe device")
    if is_netem_missing(tried.stderr):
        return NetemProbe(False, f"this kernel has no netem ({tried.stderr.strip()})")
    return NetemProbe(True, f"netem probe failed ({tried.stderr.strip()}); trying netem")


def is_netem_missing(tc_stderr: str) -> bool:
    """tc parses netem's options itself before the kernel is asked: only a well-formed command
    reaches the kernel, and only a kernel without sch_netem answers this."""
    return any(text in tc_stderr for text in _NETEM_MISSING)


# -- applying and reverting


def run_command(argv: Argv) -> "subprocess.CompletedProcess[str]":
    try:
        return subprocess.run(  # noqa: S603 (tc/ip argv built by this module, no shell)
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {COMMAND_TIMEOUT_S}s")


Runner = Callable[[Argv], "subprocess.CompletedProcess[str]"]


class StepFailed(NetgapError):
    pass


@dataclass
class Injection:
    """Applies a plan step by step, remembering what succeeded, so `revert` undoes exactly that."""

    plan: Plan
    log: TextIO = sys.stdout
    run: Runner = run_command
    applied: list[Step] = field(default_factory=list)

    def apply(self, stop_requested: Callable[[], bool] = lambda: False) -> bool:
        """True when every step is in; False when asked to stop first. StepFailed on a failure
        (call `revert` then)."""
        for step in self.plan.steps:
            if stop_requested():
                return False
            self.say(f"+ {shlex.join(step.argv)}")
            result = self.run(step.argv)
            if result.returncode != 0:
                raise StepFailed(
                    f"{shlex.join(step.argv)} failed: {_first_line(result.stderr)}",
                    hint=_hint(result.stderr),
                )
            self.applied.append(step)
        return True

    def revert(self) -> list[str]:
        """Undo what was applied, last first; carries on past failures and returns them."""
        problems = []
        while self.applied:
            undo = self.applied.pop().undo
            if undo is None:
                continue
            self.say(f"+ {shlex.join(undo)}")
            result = self.run(undo)
            if result.returncode != 0:
                problems.append(f"{shlex.join(undo)}: {_first_line(result.stderr)}")
        return problems

    def say(self, line: str) -> None:
        print(line, file=self.log, flush=True)


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _hint(stderr: str) -> str | None:
    if is_netem_missing(stderr):
        return "this kernel has no netem: rate and loss work with --no-netem, latency does not"
    if "Operation not permitted" in stderr or "Permission denied" in stderr:
        return "run as root, or with the NET_ADMIN capability"
    if "Exclusivity flag on" in stderr or "File exists" in stderr:
        return "the interface has a root qdisc already (a fault left behind? try --clear)"
    return None


STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT stay pending inside, for `hold` to take when it is ready (nesting is
    fine); ones left over at the end are dropped, having been handled."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_pending() -> bool:
    return bool(signal.sigpending() & STOP_SIGNALS)


def hold(plan: Plan, ttl_s: float, log: TextIO = sys.stdout, run: Runner = run_command) -> str:
    """Apply `plan`, keep it for `ttl_s` or until SIGTERM/SIGINT, revert; returns why it ended.

    The stop signals are held throughout and taken synchronously (sigtimedwait), so one that
    arrives mid-command waits for it to finish: what was applied is always known, and the revert
    itself cannot be interrupted. Run the steps before it (the netem probe) inside
    `stop_signals_held` too, so a signal then stops this before anything is applied. SIGKILL
    leaves the fault in place: `clear` removes it.
    """
    injection = Injection(plan, log, run)
    with stop_signals_held():
        try:
            complete = injection.apply(stop_pending)
            if complete:
                notes = "; ".join(plan.notes)
                injection.say(
                    f"applied on {plan.device} ({notes}); reverting in {ttl_s:g}s or on SIGTERM"
                )
            received = signal.sigtimedwait(STOP_SIGNALS, ttl_s if complete else 0)
        except StepFailed as failed:
            raise _with_revert_problems(failed, injection.revert()) from None
        except BaseException:  # a bug, or a log that cannot be written: still revert
            injection.revert()
            raise
        reason = "ttl expired" if received is None else signal.Signals(received.si_signo).name
        problems = injection.revert()
    if problems:
        raise NetgapError(
            "could not revert everything: " + "; ".join(problems),
            hint="netgap fault k8s --node-agent --clear removes what is left",
        )
    injection.say(f"reverted ({reason})")
    return reason


def _with_revert_problems(failed: StepFailed, problems: list[str]) -> NetgapError:
    if not problems:
        return failed
    return NetgapError(
        f"{failed}; and the revert failed too: {'; '.join(problems)}",
        hint="netgap fault k8s --node-agent --clear removes what is left",
    )


# -- leftovers


def clear_argvs(qdiscs: str, rules: Mapping[str, str], links: str = "") -> list[Argv]:
    """Commands removing what netgap left: from `tc qdisc show`, per iptables binary its
    `-t mangle -S POSTROUTING` listing, and `ip -o link show` (a netem probe's veth pair)."""
    root = re.compile(rf"^qdisc \S+ {HANDLE}: dev (\S+) root\b", re.MULTILINE)
    argvs: list[Argv] = [
        ("tc", "qdisc", "del", "dev", device, "root", "handle", f"{HANDLE}:")
        for device in root.findall(qdiscs)
    ]
    argvs += [("ip", "link", "del", name) for name in _PROBE_LINK.findall(links)]
    for binary, listing in rules.items():
        argvs += [
            (binary, "-t", "mangle", "-D", *words[1:])
            for words in map(_words, listing.splitlines())
            if words[:1] == ["-A"] and _has_comment(words)
        ]
    return argvs


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # unbalanced quotes: not a rule iptables -S printed
        return []


def _has_comment(words: list[str]) -> bool:
    return any(a == "--comment" and b == COMMENT for a, b in itertools.pairwise(words))


def leftovers(run: Runner = run_command) -> list[Argv]:
    """The commands that would remove every netgap qdisc and rule here. An iptables binary that
    is missing, or cannot list (no IPv6 in this kernel), has nothing of ours."""
    shown = run(("tc", "qdisc", "show"))
    if shown.returncode != 0:
        raise NetgapError(f"tc qdisc show failed: {_first_line(shown.stderr)}")
    rules = {}
    for binary in ("iptables", "ip6tables"):
        listed = run((binary, "-t", "mangle", "-S", "POSTROUTING"))
        if listed.returncode == 0:
            rules[binary] = listed.stdout
    links = run(("ip", "-o", "link", "show"))
    return clear_argvs(shown.stdout, rules, links.stdout if links.returncode == 0 else "")


def clear(log: TextIO = sys.stdout, run: Runner = run_command) -> int:
    """Remove every netgap qdisc and rule here; returns how many commands that took (nothing
    there is no error, so clearing twice is fine)."""
    argvs = leftovers(run)
    failures = []
    for argv in argvs:
        print(f"+ {shlex.join(argv)}", file=log, flush=True)
        result = run(argv)
        if result.returncode != 0:
            failures.append(f"{shlex.join(argv)}: {_first_line(result.stderr)}")
    if failures:
        raise NetgapError("clear failed: " + "; ".join(failures))
    return len(argvs)


def shell_lines(plan: Plan, comments: Iterable[str] = ()) -> list[str]:
    """The plan as a shell script: notes, the apply commands, then the revert commands."""
    lines = [f"# {text}" for text in (*comments, *plan.notes)]
    lines += ["# apply", *plan.apply_lines(), "# revert", *plan.revert_lines()]
    return lines
