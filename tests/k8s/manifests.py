"""The rendered cluster manifests, as the tests in this package read them.

Every object comes from `kubectl kustomize` (what `kubectl apply -k` applies), never from the
source files, so patches and generators are accounted for.
"""

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
NAMESPACE = "netgap"
FAULT_NAMESPACE = "netgap-fault"
CLUSTER_DOMAIN = "cluster.local"

# Every kustomization under k8s/, by the name the tests use (a test checks none is missing).
VARIANTS: dict[str, Path] = {
    "root": K8S,
    "base": K8S / "base",
    "nodeport": K8S / "overlays" / "nodeport",
    "same-node": K8S / "overlays" / "same-node",
    "fault": K8S / "overlays" / "fault",
    "prometheus": K8S / "overlays" / "prometheus",
}
# The variants that deploy the lab itself (the fault overlay only adds the agent).
APP_VARIANTS = ("base", "nodeport", "same-node", "prometheus")
WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip(
            "kubectl is not on PATH: these tests render k8s/ with `kubectl kustomize` "
            "(kubectl >= 1.27, no cluster needed)"
        )
    return found


@functools.cache
def _render(path: Path) -> tuple[Obj, ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)


def render(variant: str) -> list[Obj]:
    """A fresh copy of the variant's objects (tests may change theirs)."""
    return [_copy(obj) for obj in _render(VARIANTS[variant])]


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _copy(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_copy(value) for value in obj]
    return obj


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_template(workload: Obj) -> Obj:
    """The pod (metadata + spec) a workload object runs."""
    kind = workload["kind"]
    if kind == "Pod":
        return workload
    if kind == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]  # type: ignore[no-any-return]
    return workload["spec"]["template"]  # type: ignore[no-any-return]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


@dataclass(frozen=True)
class Container:
    workload: Obj
    pod: Obj  # the pod template: metadata + spec
    spec: Obj

    @property
    def where(self) -> str:
        return f"{self.workload['kind']} {self.workload['metadata']['name']}/{self.spec['name']}"

    @property
    def namespace(self) -> str:
        return str(self.workload["metadata"].get("namespace", ""))

    def port(self, name: str) -> int:
        for port in self.spec.get("ports", []):
            if port.get("name") == name:
                return int(port["containerPort"])
        raise AssertionError(f"{self.where} has no port named {name!r}")

    def env(self) -> list[Obj]:
        return list(self.spec.get("env", []))


def containers(objects: list[Obj], *, init: bool = True) -> Iterator[Container]:
    for workload in workloads(objects):
        pod = pod_template(workload)
        keys = ("initContainers", "containers") if init else ("containers",)
        for key in keys:
            for spec in pod["spec"].get(key, []):
                yield Container(workload, pod, spec)


def container(objects: list[Obj], workload_name: str) -> Container:
    found = [c for c in containers(objects) if c.workload["metadata"]["name"] == workload_name]
    assert len(found) == 1, f"expected one container in {workload_name}, found {len(found)}"
    return found[0]


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a label set. An
    empty selector selects everything, a missing one (None) nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise AssertionError(f"unknown selector operator {operator!r}")
    return True


def selected_workloads(
    objects: list[Obj], selector: Mapping[str, Any], namespace: str
) -> list[Obj]:
    return [
        w
        for w in workloads(objects)
        if w["metadata"].get("namespace") == namespace
        and selects(selector, pod_template(w)["metadata"].get("labels", {}))
    ]


def service_dns(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def references(text: str) -> list[str]:
    """The `$(VAR)` names in a value Kubernetes expands (env values, command, args)."""
    return _REFERENCE.findall(text)


def expand(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes' dependent variable expansion: `$(VAR)` of a known variable is replaced,
    an unknown one stays as written."""
    return _REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def config_map_data(objects: list[Obj], name: str, namespace: str) -> dict[str, str]:
    for obj in of_kind(objects, "ConfigMap"):
        if obj["metadata"]["name"] == name and obj["metadata"].get("namespace") == namespace:
            return dict(obj.get("data", {}))
    raise AssertionError(f"no ConfigMap {name} in {namespace}")


FIELD_VALUES = {
    "metadata.name": "web-7d4b9c-x2v5q",
    "metadata.namespace": NAMESPACE,
    "spec.nodeName": "worker-1",
}


def container_environment(
    objects: list[Obj], c: Container, fields: Mapping[str, str] = FIELD_VALUES
) -> dict[str, str]:
    """The environment the container's process starts with, as the kubelet builds it: envFrom
    first, then env in order with `$(VAR)` expanded from what came before. Downward API fields
    take their values from `fields` (FIELD_VALUES' stand-ins by default); a field not listed
    there fails the test."""
    environment: dict[str, str] = {}
    for source in c.spec.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"{c.where}: only configMapRef envFrom is understood here"
        prefix = source.get("prefix", "")
        data = config_map_data(objects, ref["name"], c.namespace)
        environment.update({prefix + key: value for key, value in data.items()})
    for var in c.env():
        if "value" in var:
            environment[var["name"]] = expand(str(var["value"]), environment)
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in fields, f"{c.where}: no value for field {path}"
            environment[var["name"]] = fields[path]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environment[var["name"]] = config_map_data(objects, ref["name"], c.namespace)[
                ref["key"]
            ]
        else:
            raise AssertionError(f"{c.where}: env {var['name']} from an unexpected source")
    return environment


def service_for_url(objects: list[Obj], url: str) -> tuple[Obj, Obj]:
    """The Service a cluster URL names, and the Service port it uses."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", host)
    assert match, f"{url}: not a Service's cluster DNS name"
    service = named(
        [s for s in of_kind(objects, "Service") if s["metadata"]["namespace"] == match[2]],
        "Service",
        match[1],
    )
    assert host == service_dns(service["metadata"]["name"], service["metadata"]["namespace"])
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert len(ports) == 1, f"{url}: Service {match[1]} has no port {port}"
    return service, ports[0]


def backends(objects: list[Obj], service: Obj, service_port: Obj) -> list[tuple[Container, int]]:
    """Each container the Service sends that port to, with the container port it lands on."""
    # A Service's selector is a plain label map, not a LabelSelector.
    selector = {"matchLabels": service["spec"]["selector"]}
    selected = selected_workloads(objects, selector, service["metadata"]["namespace"])
    assert selected, f"Service {service['metadata']['name']} selects no pods"
    target = service_port["targetPort"]
    assert isinstance(target, str), "targetPort must name a container port"
    found = []
    for workload in selected:
        hits = [
            (c, c.port(target))
            for c in containers([workload])
            if any(p.get("name") == target for p in c.spec.get("ports", []))
        ]
        assert len(hits) == 1, f"{workload['metadata']['name']}: no single port {target!r}"
        found += hits
    return found
