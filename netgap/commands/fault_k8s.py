"""Inject network faults on a Kubernetes node or pod with tc, as the story did with Comcast.

  netgap fault k8s --node worker-1 --preset article --apply
  netgap fault k8s --node worker-1 --latency 500ms --target 10.0.0.0/24 --target-port 8801
  netgap fault k8s --selector app=apitier --namespace demo --loss 1% --apply
  netgap fault k8s --pod apitier-0 --preset article --format chaos-mesh
  netgap fault k8s --preset article --device tunl0 --format commands
  netgap fault k8s --node worker-1 --clear --apply

--node renders a short-lived Pod pinned to that node, in its network namespace (hostNetwork,
NET_ADMIN), running this command with --node-agent: it puts netem delay, jitter, loss and a rate
cap on the egress of the CNI's interface (tunl0, vxlan.calico, flannel.1 or cni0 when up, else
the default route's; or --device), only towards --target networks (and --target-port) if given,
keeps them for --ttl, then removes exactly what it added. Deleting the Pod (SIGTERM) removes
them at once. --pod/--selector render an ephemeral container doing the same inside those pods'
network namespace (eth0); that needs NET_ADMIN in the app's namespace, which k8s/'s
Pod Security 'restricted' label refuses: relabel it for the experiment (docs/cluster.md).
--format chaos-mesh renders the equivalent Chaos Mesh NetworkChaos;
--format commands prints the tc/iptables commands that apply and revert, for reading or running
by hand. --apply runs kubectl (replacing a fault Pod of the same name: one fault per node).

--node-agent is what runs in the Pod; as root on any Linux host it is the "kernel mode": apply,
hold until --ttl or SIGTERM/SIGINT, revert, exit 0. On a kernel without netem (probed), the rate
cap goes through tbf and loss through iptables `statistic` (also with --no-netem); latency then
cannot be had. --clear removes what a killed agent left (a root qdisc with handle 4e47:, rules
commented netgap-fault). Units are tc's: 500ms, 50kbit (kilobits/s), 6250bps (bytes/s), 1%.

Exit 0 when done, 1 when something failed (kubectl, tc), 2 for a bad command line.
"""

import argparse
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence

from netgap.argtypes import port, positive_duration_s
from netgap.commands.fault_flags import SHAPING, add_fault_arguments, faults_from_args
from netgap.errors import NetgapError, UsageError
from netgap.fault import k8s, tc
from netgap.fault.spec import Faults

FORMATS = ("pod", "commands", "chaos-mesh")
MAX_TTL_S = 7 * 86400
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fault_arguments(
        parser, fields=SHAPING, title="faults (on egress; the flags given override --preset)"
    )
    scope = parser.add_argument_group("where")
    scope.add_argument(
        "--device",
        type=_interface,
        metavar="NAME",
        help="interface to fault (node: the CNI's, detected on the node; pod: eth0)",
    )
    scope.add_argument(
        "--target",
        type=_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="fault only traffic to this network (repeatable; IPv4 or IPv6)",
    )
    scope.add_argument(
        "--target-port", type=port, metavar="PORT", help="and to this port (TCP and UDP)"
    )
    chosen = scope.add_mutually_exclusive_group()
    chosen.add_argument("--node", type=_subdomain, metavar="NODE", help="the node to fault")
    chosen.add_argument(
        "--pod", type=_subdomain, metavar="NAME", help="one pod to fault, in --namespace"
    )
    chosen.add_argument(
        "--selector", type=_selector, metavar="KEY=VALUE", help="the pods to fault: app=apitier"
    )
    scope.add_argument(
        "--namespace",
        type=_label,
        help=f"of the agent Pod with --node ({k8s.FAULT_NAMESPACE}: the app's own namespace "
        "enforces Pod Security 'restricted', which refuses it), of the pods with --pod or "
        f"--selector, and of the NetworkChaos ({k8s.NAMESPACE})",
    )
    parser.add_argument(
        "--ttl",
        type=_ttl,
        default=300.0,
        metavar="TIME",
        help="how long the faults stay: 30s, 5m, 1h (5m)",
    )
    parser.add_argument(
        "--image",
        type=_image,
        default=k8s.IMAGE,
        help=f"with netgap, tc and iptables ({k8s.IMAGE})",
    )
    parser.add_argument("--format", choices=FORMATS, default="pod", help="what to print (pod)")
    parser.add_argument("--apply", action="store_true", help="run it through kubectl")
    parser.add_argument("--clear", action="store_true", help="remove faults left behind")
    parser.add_argument(
        "--no-netem",
        action="store_true",
        help="plan for a kernel without netem: rate via tbf, loss via iptables, no latency",
    )
    parser.add_argument(
        "--node-agent",
        action="store_true",
        help="apply here (root or NET_ADMIN), hold for --ttl or until SIGTERM, revert",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --node-agent or --apply: print, change nothing"
    )


def run(args: argparse.Namespace) -> int:
    if args.namespace is None:
        node_pod = args.node is not None and args.format != "chaos-mesh"
        args.namespace = k8s.FAULT_NAMESPACE if node_pod else k8s.NAMESPACE
    if args.node_agent:
        return _run_agent(args)
    if args.format == "commands":
        return _print_commands(args)
    if args.format == "chaos-mesh":
        return _chaos_mesh(args, k8s.Where(args.node, args.pod, args.selector))
    if args.node is not None:
        return _node(args)
    if args.pod is not None or args.selector is not None:
        return _pods(args)
    raise UsageError(
        "say where: --node NODE, --pod NAME or --selector KEY=VALUE",
        hint="--format commands prints the tc commands alone",
    )


def _checked_plan(
    args: argparse.Namespace, device: str, *, netem: bool, mtu: int = 1500
) -> tc.Plan:
    """The plan, also to check before rendering that the faults can be done the way asked."""
    return tc.plan(faults_from_args(args), device, _scope(args), netem=netem, mtu=mtu)


def _scope(args: argparse.Namespace) -> tc.Scope:
    return tc.Scope(tuple(args.target), args.target_port)


def _agent(args: argparse.Namespace, device: str | None) -> k8s.Agent:
    if not args.clear:
        _checked_plan(args, device or k8s.POD_DEVICE, netem=not args.no_netem)
    return k8s.Agent(
        faults=Faults() if args.clear else faults_from_args(args),
        scope=_scope(args),
        ttl_s=args.ttl,
        device=device,
        netem=not args.no_netem,
        clear=args.clear,
    )


# -- on this machine


def _run_agent(args: argparse.Namespace) -> int:
    for flag in ("node", "pod", "selector"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--node-agent applies here: drop --{flag}")
    if args.apply:
        raise UsageError("--node-agent applies here: drop --apply")
    if args.clear:
        return _clear_here(args.dry_run)
    with tc.stop_signals_held():  # a SIGTERM while probing still stops before anything is added
        device = args.device or tc.detect_interface()
        netem = not args.no_netem and _has_netem(args)
        plan = _checked_plan(args, device, netem=netem, mtu=tc.device_mtu(device))
        if args.dry_run:
            print("\n".join(tc.shell_lines(plan)))
            return 0
        tc.hold(plan, args.ttl)
    return 0


def _has_netem(args: argparse.Namespace) -> bool:
    faults = faults_from_args(args)
    if args.dry_run or not (faults.latency_s or faults.loss):
        return True  # nothing probed: a dry run changes nothing, a rate alone is tbf anyway
    probe = tc.probe_netem()
    if probe.available:
        return True
    if faults.latency_s:
        raise tc.FaultPlanError(
            f"latency needs netem: {probe.how}",
            hint="rate and loss work without it; the local proxy (netgap fault proxy) does latency",
        )
    print(f"netem: {probe.how}; rate goes through tbf, loss through iptables", file=sys.stderr)
    return False


def _clear_here(dry_run: bool) -> int:
    if dry_run:
        print("\n".join(shlex.join(argv) for argv in tc.leftovers()) or "# nothing to clear")
        return 0
    if tc.clear() == 0:
        print("nothing to clear")
    return 0


# -- rendering


def _print_commands(args: argparse.Namespace) -> int:
    if args.apply or args.clear:
        raise UsageError(
            "--format commands only prints what the agent runs",
            hint="on the node: netgap fault k8s --node-agent [--clear] [--dry-run]",
        )
    comments = []
    device = args.device
    if device is None and (args.pod or args.selector):
        device = k8s.POD_DEVICE
    elif device is None:
        device = tc.detect_interface()
        comments.append(f"device {device}: detected on this machine; the node's may differ")
    plan = _checked_plan(args, device, netem=not args.no_netem)
    print("\n".join(tc.shell_lines(plan, comments)))
    return 0


def _chaos_mesh(args: argparse.Namespace, where: k8s.Where) -> int:
    if args.clear:
        raise UsageError(
            "Chaos Mesh removes its own faults",
            hint=f"kubectl delete networkchaos -n {args.namespace} {where.name()}",
        )
    manifest = k8s.network_chaos(
        faults_from_args(args),
        _scope(args),
        args.ttl,
        where=where,
        namespace=args.namespace,
        device=args.device,
    )
    if args.apply:
        _kubectl(k8s.apply_manifest(manifest), args.dry_run)
    else:
        print(k8s.to_json(manifest), end="")
    return 0


def _node(args: argparse.Namespace) -> int:
    pod = k8s.node_pod(
        _agent(args, args.device), node=args.node, namespace=args.namespace, image=args.image
    )
    if not args.apply:
        print(k8s.to_json(pod), end="")
        return 0
    calls = k8s.apply_node_pod(pod)
    if args.clear:  # a running fault Pod reverts when deleted; the clear Pod gets the rest
        running = k8s.node_pod_name(args.node)
        calls.insert(0, k8s.KubectlCall(_delete_pod(running, args.namespace)))
    _kubectl(calls, args.dry_run)
    name = pod["metadata"]["name"]
    print(
        f"follow: kubectl logs -n {args.namespace} -f {name}\n"
        f"revert now: kubectl delete pod -n {args.namespace} {name}",
        file=sys.stderr,
    )
    return 0


def _delete_pod(name: str, namespace: str) -> tuple[str, ...]:
    return ("kubectl", "delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait=true")


def _pods(args: argparse.Namespace) -> int:
    name = f"{k8s.CONTAINER}-{secrets.token_hex(3)}"  # ephemeral containers are never removed
    patch = k8s.ephemeral_container_patch(
        _agent(args, args.device or k8s.POD_DEVICE), name=name, image=args.image
    )
    if not args.apply:
        print(k8s.to_json(patch), end="")
        return 0
    pods = [args.pod] if args.pod else _selected_pods(args.selector, args.namespace, args.dry_run)
    _kubectl(k8s.apply_ephemeral(patch, pods, args.namespace), args.dry_run)
    print(
        f"follow: kubectl logs -n {args.namespace} -f POD -c {name}\n"
        f"revert now: kubectl exec -n {args.namespace} POD -c {name} -- kill -TERM 1",
        file=sys.stderr,
    )
    return 0


def _selected_pods(selector: str, namespace: str, dry_run: bool) -> list[str]:
    call = k8s.list_pods(selector, namespace)
    if dry_run:
        print(shlex.join(call.argv))
        return ["POD"]
    listed = subprocess.run(  # noqa: S603 (kubectl with the argv we built, no shell)
        [_kubectl_path(), *call.argv[1:]], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        raise NetgapError(f"{shlex.join(call.argv)} failed: {listed.stderr.strip()}")
    pods = k8s.pod_names(listed.stdout)
    if not pods:
        raise NetgapError(f"no pod in namespace {namespace} matches {selector}")
    return pods


def _kubectl(calls: Sequence[k8s.KubectlCall], dry_run: bool) -> None:
    if dry_run:
        for call in calls:
            heredoc = "" if call.stdin is None else f" <<'EOF'\n{call.stdin}EOF"
            print(shlex.join(call.argv) + heredoc)
        return
    kubectl = _kubectl_path()
    for call in calls:
        done = subprocess.run(  # noqa: S603 (kubectl with the argv we built, no shell)
            [kubectl, *call.argv[1:]], input=call.stdin, text=True, check=False
        )
        if done.returncode != 0:
            raise NetgapError(f"{shlex.join(call.argv)} failed (exit {done.returncode})")


def _kubectl_path() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise NetgapError(
            "kubectl not found on PATH; --apply runs it",
            hint="install kubectl, or drop --apply and pipe the output to kubectl apply -f -",
        )
    return found


# -- argument types: each rejects a bad value with one line naming the expected form


def _ttl(text: str) -> float:
    seconds = positive_duration_s(text)
    if seconds > MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"at most 7 days (168h), got {text}")
    return seconds


def _network(text: str) -> tc.Network:
    try:
        return tc.parse_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interface(text: str) -> str:
    # Linux's dev_valid_name: 1 to 15 bytes, not . or .., no slash, colon or whitespace
    if not 0 < len(text.encode()) < 16 or text in (".", "..") or re.search(r"[/:\s]", text):
        raise argparse.ArgumentTypeError(f"not an interface name: {text!r}")
    return text


def _selector(text: str) -> str:
    try:
        k8s.parse_selector(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _label(text: str) -> str:
    if not _DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a namespace name (lowercase DNS label): {text!r}")
    return text


def _subdomain(text: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a Kubernetes object name: {text!r}")
    return text


def _image(text: str) -> str:
    if not text or re.search(r"\s", text):
        raise argparse.ArgumentTypeError(f"not an image reference: {text!r}")
    return text
