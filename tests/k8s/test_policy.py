"""Rules every rendered workload keeps. In the lab's variants: Pod Security's "restricted"
profile and then some (no root, read-only root filesystem, no host access, an explicit image
tag, requests and limits, probes). The fault overlay may break exactly the rules its agent
needs, and no other."""

import re

import pytest

from tests.k8s.manifests import (
    APP_VARIANTS,
    FAULT_NAMESPACE,
    NAMESPACE,
    VARIANTS,
    Container,
    containers,
    of_kind,
    pod_template,
    render,
    workloads,
)

# Volume types Pod Security's "restricted" profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Containers with nothing to probe, and why.
UNPROBED = {
    "traffic": "netgap load serves no port; when it dies, the container restarts",
    "netgap-fault": "a run-to-completion Job; the agent reverts and exits on any failure",
}
# What the fault agent needs, exactly (netgap.fault.k8s.node_pod).
FAULT_CAPABILITIES = ["NET_ADMIN", "NET_RAW"]
FAULT_HOST_PATHS = ["/run/xtables.lock"]
_TAG = re.compile(r"^[a-z0-9./-]+:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def security(c: Container, key: str) -> object:
    """A security setting as it takes effect: the container's, else the pod's."""
    if key in c.spec.get("securityContext", {}):
        return c.spec["securityContext"][key]
    return c.pod["spec"].get("securityContext", {}).get(key)


def test_workload_kinds_are_known() -> None:
    """Every pod-making object is seen by the checks below (none hides under another kind)."""
    for variant in VARIANTS:
        for obj in render(variant):
            assert "template" not in obj.get("spec", {}) or obj in workloads(render(variant))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_images_are_pinned(variant: str) -> None:
    for c in containers(render(variant)):
        match = _TAG.match(c.spec["image"])
        assert match, f"{c.where}: {c.spec['image']} has no explicit tag"
        assert match["tag"] != "latest", c.where
        assert c.spec["imagePullPolicy"] == "IfNotPresent", c.where


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resources_are_requested_and_limited(variant: str) -> None:
    for c in containers(render(variant)):
        resources = c.spec.get("resources", {})
        for key in ("cpu", "memory"):
            assert resources.get("requests", {}).get(key), f"{c.where}: no {key} request"
            assert resources.get("limits", {}).get(key), f"{c.where}: no {key} limit"


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_no_root_no_privilege_no_host_access(variant: str) -> None:
    for workload in workloads(render(variant)):
        spec = pod_template(workload)["spec"]
        where = f"{workload['kind']} {workload['metadata']['name']}"
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{where}: {key}"
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where
        assert "terminationGracePeriodSeconds" in spec, where
        assert spec.get("securityContext", {}).get("seccompProfile") == {"type": "RuntimeDefault"}
    for c in containers(render(variant)):
        context = c.spec.get("securityContext", {})
        assert security(c, "runAsNonRoot") is True, c.where
        assert security(c, "runAsUser") not in (None, 0), f"{c.where}: a numeric non-root uid"
        assert security(c, "runAsGroup") not in (None, 0), c.where
        assert context.get("privileged", False) is False, c.where
        assert context["allowPrivilegeEscalation"] is False, c.where
        assert context["readOnlyRootFilesystem"] is True, c.where
        assert context["capabilities"] == {"drop": ["ALL"]}, c.where
        for port in c.spec.get("ports", []):
            assert "hostPort" not in port, c.where


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_serving_containers_have_probes(variant: str) -> None:
    for c in containers(render(variant)):
        name = c.spec["name"]
        if name in UNPROBED:
            assert not c.spec.get("ports"), f"{c.where} serves a port: probe it"
            continue
        for kind in ("readinessProbe", "livenessProbe"):
            probe = c.spec.get(kind)
            assert probe, f"{c.where}: no {kind}"
            assert probe["httpGet"]["port"] in {p["name"] for p in c.spec["ports"]}
            assert probe.get("timeoutSeconds", 1) < probe.get("periodSeconds", 10)


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_namespace_enforces_restricted(variant: str) -> None:
    [namespace] = of_kind(render(variant), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == NAMESPACE
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_scaled_tiers_survive_disruption(variant: str) -> None:
    objects = render(variant)
    budgets = {pdb["metadata"]["name"] for pdb in of_kind(objects, "PodDisruptionBudget")}
    scalers = {hpa["metadata"]["name"] for hpa in of_kind(objects, "HorizontalPodAutoscaler")}
    assert budgets == scalers == {"webtier", "apitier"}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["minReplicas"] >= 2
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_fault_agent_breaks_only_what_it_needs() -> None:
    """Root with NET_ADMIN and NET_RAW (tc and iptables), the node's network namespace and the
    xtables lock: nothing else, and only in its own namespace."""
    objects = render("fault")
    [workload] = workloads(objects)
    assert workload["kind"] == "Job"
    assert workload["metadata"]["namespace"] == FAULT_NAMESPACE
    spec = pod_template(workload)["spec"]
    assert spec["hostNetwork"] is True
    assert not spec.get("hostPID")
    assert not spec.get("hostIPC")
    assert spec["automountServiceAccountToken"] is False
    assert [v["hostPath"]["path"] for v in spec["volumes"]] == FAULT_HOST_PATHS
    [c] = containers(objects)
    context = c.spec["securityContext"]
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": FAULT_CAPABILITIES}
    assert "allowPrivilegeEscalation" not in context or context["allowPrivilegeEscalation"] is False
