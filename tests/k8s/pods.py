"""Containers run on podman the way the rendered manifests say, as far as one machine can.

From each container's spec (what `kubectl kustomize k8s/` renders): the command and args with
`$(VAR)` expanded, the environment as the kubelet builds it, the pod's user and group, a
read-only root filesystem, dropped capabilities, no privilege escalation, each emptyDir as a
tmpfs of its sizeLimit, the memory and CPU limits, the pod name as the hostname. A Service is
stood in for by a ClusterIP that its backend container holds: the cluster DNS name points to it
in every later container's /etc/hosts, the Service ports are redirected to the container ports
in the backend's network namespace (as kube-proxy's DNAT does on a node), other ports refused.
Not here: probes run by a kubelet, more than one replica, NetworkPolicies, scheduling
(docs/cluster.md).
"""

import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.k8s.engine import Engine, EngineError
from tests.k8s.manifests import (
    NAMESPACE,
    Container,
    Obj,
    backends,
    container_environment,
    expand,
    of_kind,
    service_dns,
)

_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G|m)?")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity_bytes(text: str) -> int:
    match = _QUANTITY.fullmatch(str(text))
    assert match, f"not a quantity: {text}"
    assert match[2] != "m", f"not a byte quantity: {text}"
    return int(float(match[1]) * _BINARY.get(match[2] or "", 1))


def quantity_cpus(text: str) -> float:
    match = _QUANTITY.fullmatch(str(text))
    assert match, f"not a quantity: {text}"
    assert match[2] in (None, "m"), f"not a CPU quantity: {text}"
    return float(match[1]) / (1000 if match[2] == "m" else 1)


def security(c: Container) -> dict[str, Any]:
    """The pod's securityContext with the container's own on top (the container's wins)."""
    merged = dict(c.pod["spec"].get("securityContext") or {})
    merged.update(c.spec.get("securityContext") or {})
    return merged


def user(c: Container) -> tuple[int, int]:
    context = security(c)
    assert "runAsUser" in context, f"{c.where}: no runAsUser"
    assert "runAsGroup" in context, f"{c.where}: no runAsGroup"
    return int(context["runAsUser"]), int(context["runAsGroup"])


def grace_s(c: Container) -> float:
    """What the kubelet leaves the process after SIGTERM: the grace period less the preStop
    sleep that runs first."""
    total = float(c.pod["spec"].get("terminationGracePeriodSeconds", 30))
    sleep = (c.spec.get("lifecycle") or {}).get("preStop", {}).get("sleep", {})
    return total - float(sleep.get("seconds", 0))


def run_argv(
    objects: list[Obj],
    c: Container,
    image: str,
    name: str,
    network: str,
    hosts: Mapping[str, str],
    command: list[str] | None = None,
) -> list[str]:
    """`podman run` for the container as its rendered spec says; `command` replaces the spec's
    command and args (for the collector playing Jaeger)."""
    fields = {"metadata.name": name, "metadata.namespace": c.namespace, "spec.nodeName": "podman"}
    environment = container_environment(objects, c, fields)
    uid, gid = user(c)
    context = security(c)
    argv = [
        "run",
        "--detach",
        f"--name={name}",
        f"--hostname={name}",
        f"--network={network}",
        f"--user={uid}:{gid}",
        f"--stop-timeout={int(grace_s(c))}",
    ]
    if context.get("readOnlyRootFilesystem"):
        # podman's --read-only adds tmpfs on /tmp, /run, /var/tmp: not what the pod has
        argv += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        argv.append("--security-opt=no-new-privileges")
    capabilities = context.get("capabilities") or {}
    argv += [f"--cap-drop={cap.lower()}" for cap in capabilities.get("drop", [])]
    argv += [f"--cap-add={cap.lower()}" for cap in capabilities.get("add", [])]
    limits = (c.spec.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        argv.append(f"--memory={quantity_bytes(limits['memory'])}")
    if "cpu" in limits:
        argv.append(f"--cpus={quantity_cpus(limits['cpu'])}")
    argv += volumes(c)
    argv += [f"--add-host={host}:{ip}" for host, ip in sorted(hosts.items())]
    for key, value in environment.items():
        argv += ["--env", f"{key}={value}"]
    if command is not None:
        return [*argv, f"--entrypoint={json.dumps(command[:1])}", image, *command[1:]]
    if "command" in c.spec:
        words = [expand(w, environment) for w in [*c.spec["command"], *c.spec.get("args", [])]]
        return [*argv, f"--entrypoint={json.dumps(words[:1])}", image, *words[1:]]
    return [*argv, image, *[expand(a, environment) for a in c.spec.get("args", [])]]


def volumes(c: Container) -> list[str]:
    """Each emptyDir mount as a tmpfs of the emptyDir's sizeLimit; other volumes fail."""
    by_name = {v["name"]: v for v in c.pod["spec"].get("volumes", [])}
    argv = []
    for mount in c.spec.get("volumeMounts", []):
        volume = by_name[mount["name"]]
        assert "emptyDir" in volume, f"{c.where}: only emptyDir volumes are stood in for"
        options = [f"destination={mount['mountPath']}", "tmpfs-mode=1777"]
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        if size:
            options.append(f"tmpfs-size={quantity_bytes(size)}")
        argv.append("--mount=type=tmpfs," + ",".join(options))
    return argv


@dataclass
class Pod:
    """One running container, as podman knows it."""

    name: str  # the podman container and the pod's name (also its hostname)
    container: Container
    ip: str
    pid: int


_RUN = re.compile(r"netgap-smoke-(\d+)-.+")


def sweep(engine: Engine) -> None:
    """What a killed run left behind: containers and networks named after a process that is
    gone."""
    for kind, listing in (("container", "ps --all"), ("network", "network ls")):
        names = engine.run(
            *listing.split(), "--format", "{{.Names}}" if kind == "container" else "{{.Name}}"
        )
        for name in names.stdout.split():
            run = _RUN.fullmatch(name)
            if run and not Path(f"/proc/{run[1]}").exists():
                engine.run(kind, "rm", "--force", name, check=False)


@dataclass
class Cluster:
    """The containers of one test run on a network of their own, with the Services' names."""

    engine: Engine
    objects: list[Obj]
    prefix: str
    network: str = ""
    subnet: str = ""
    hosts: dict[str, str] = field(default_factory=dict)  # Service DNS name -> address
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        sweep(self.engine)
        self.network = f"{self.prefix}-net"
        self.engine.run("network", "create", self.network)

    def close(self) -> None:
        for pod in self.pods:
            self.engine.run("rm", "--force", "--time", "0", pod.name, check=False)
        self.engine.run("network", "rm", "--force", self.network, check=False)

    def argv(
        self, c: Container, image: str, name: str, command: list[str] | None = None
    ) -> list[str]:
        return run_argv(self.objects, c, image, name, self.network, self.hosts, command)

    def start(self, c: Container, image: str, role: str, command: list[str] | None = None) -> Pod:
        name = f"{self.prefix}-{role}"
        self.engine.run(*self.argv(c, image, name, command))
        address = f'(index .NetworkSettings.Networks "{self.network}").IPAddress'
        fmt = "{{" + address + "}} {{.State.Pid}}"
        ip, pid = self.engine.run("inspect", "--format", fmt, name).stdout.split()
        pod = Pod(name, c, ip, int(pid))
        self.pods.append(pod)
        self._serve(pod)
        return pod

    def _serve(self, pod: Pod) -> None:
        """Each Service that sends to this container gets a ClusterIP of its own, held by the
        container (the network's top addresses, which podman hands out last): its cluster DNS
        name resolves to that address, its ports are redirected to the container ports, and
        any other port is refused, as at a real Service."""
        workload = pod.container.workload["metadata"]["name"]
        for service in of_kind(self.objects, "Service"):
            if service["metadata"].get("namespace") != NAMESPACE:
                continue
            ports = [
                (int(port["port"]), target)
                for port in service["spec"]["ports"]
                for c, target in backends(self.objects, service, port)
                if c.workload["metadata"]["name"] == workload
            ]
            if not ports:
                continue
            cluster_ip = self._cluster_ip()
            # Every name a pod in the namespace resolves through its DNS search list.
            fqdn = service_dns(service["metadata"]["name"], NAMESPACE)
            labels = fqdn.split(".")
            for name in (*(".".join(labels[:depth]) for depth in (1, 2, 3)), fqdn):
                self.hosts[name] = cluster_ip
            self._nsenter(pod, "ip", "address", "add", f"{cluster_ip}/32", "dev", "eth0")
            for port, target in ports:
                rule = ["-d", cluster_ip, "-p", "tcp", "--dport", str(port)]
                redirect = ["-j", "REDIRECT", "--to-ports", str(target)]
                self._nsenter(pod, "iptables", "-t", "nat", "-A", "PREROUTING", *rule, *redirect)
            # A redirected packet is addressed to the container's own address by now: what
            # still goes to the ClusterIP is for a port the Service does not have.
            refuse = ["-d", cluster_ip, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
            self._nsenter(pod, "iptables", "-A", "INPUT", *refuse)

    def _cluster_ip(self) -> str:
        if not self.subnet:
            [network] = json.loads(self.engine.run("network", "inspect", self.network).stdout)
            self.subnet = network["subnets"][0]["subnet"]
        top = ipaddress.ip_network(self.subnet).broadcast_address
        return str(top - 1 - len(set(self.hosts.values())))

    def _nsenter(self, pod: Pod, *argv: str) -> None:
        command = ["nsenter", f"--target={pod.pid}", "--net", *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise EngineError(f"{' '.join(command)}: {done.stderr}")

    def logs(self, pod: Pod) -> str:
        done = self.engine.run("logs", pod.name, check=False)
        return done.stdout + done.stderr

    def running(self, pod: Pod) -> bool:
        state = self.engine.run("inspect", "--format", "{{.State.Running}}", pod.name)
        return state.stdout.strip() == "true"

    def stop(self, pod: Pod, timeout_s: float) -> tuple[int, float]:
        """SIGTERM, as the kubelet sends it; the exit code and how long the process took.
        Past timeout_s the kubelet would SIGKILL it: that counts as a failure (-1)."""
        start = time.monotonic()
        self.engine.run("kill", "--signal", "TERM", pod.name)
        try:
            done = self.engine.run("wait", pod.name, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return -1, time.monotonic() - start
        return int(done.stdout.strip()), time.monotonic() - start


def wait_ready(cluster: Cluster, pod: Pod, port: int, path: str, timeout_s: float = 60) -> None:
    """Poll like a readiness probe until the server answers 200, or fail with its log."""
    import httpx  # the tests' HTTP client; imported here to keep this module's top light

    url = f"http://{pod.ip}:{port}{path}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not cluster.running(pod):
            break
        time.sleep(0.25)
    raise AssertionError(f"{pod.name} not ready at {url}:\n{cluster.logs(pod)[-3000:]}")


def probe(c: Container) -> tuple[int, str]:
    """The readiness probe's port number and path."""
    get = c.spec["readinessProbe"]["httpGet"]
    port = get["port"]
    return (c.port(port) if isinstance(port, str) else int(port)), str(get["path"])
