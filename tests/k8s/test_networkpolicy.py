"""The rendered NetworkPolicies against the flows the lab needs: each needed flow allowed,
every other flow into or out of the namespace denied."""

from typing import Any

import pytest

from tests.k8s.manifests import (
    APP_VARIANTS,
    NAMESPACE,
    Obj,
    backends,
    container_environment,
    containers,
    of_kind,
    pod_template,
    render,
    selects,
    service_for_url,
    workloads,
)
from tests.k8s.netpol import Cluster, Endpoint, Flow

KUBE_DNS = Endpoint(
    "kube-dns", "10.244.0.10", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53, "dns-tcp": 53}
)
# A pod in another namespace wearing the web tier's labels: namespaces must not be ignored.
IMPOSTOR = Endpoint("impostor", "10.244.3.3", "default", {"app.kubernetes.io/name": "webtier"})
OUTSIDE = Endpoint("outside", "203.0.113.7")  # a documentation address; nothing is sent
# The Prometheus Operator's pods in the monitoring namespace, a pod there that is not
# Prometheus, and a Prometheus elsewhere: only the first may scrape (overlays/prometheus).
MONITORING = "monitoring"
PROMETHEUS = Endpoint(
    "prometheus", "10.244.4.4", MONITORING, {"app.kubernetes.io/name": "prometheus"}
)
MONITORING_OTHER = Endpoint(
    "monitoring-other", "10.244.4.5", MONITORING, {"app.kubernetes.io/name": "grafana"}
)
STRAY_PROMETHEUS = Endpoint(
    "stray-prometheus", "10.244.5.5", "default", {"app.kubernetes.io/name": "prometheus"}
)
# Ports the Jaeger process listens on besides the four it declares (its built-in config).
JAEGER_UNDECLARED = (16685, 14250, 14268, 9411, 5778, 5779, 8888, 27777)
TCP, UDP = "TCP", "UDP"

NEEDED = {
    ("traffic", "webtier", 8800, TCP),
    ("webtier", "apitier", 8801, TCP),
    ("webtier", "jaeger", 4317, TCP),
    ("webtier", "jaeger", 4318, TCP),
    ("apitier", "jaeger", 4317, TCP),
    ("apitier", "jaeger", 4318, TCP),
    *(
        (pod, "kube-dns", 53, proto)
        for pod in ("traffic", "webtier", "apitier")
        for proto in (TCP, UDP)
    ),
}
# Through a node port anyone reaches the web tier (including, after SNAT, the nodes); pods of
# the namespace still only send what their egress rules allow.
NODEPORT = {
    (source.name, "webtier", 8800, TCP)
    for source in (OUTSIDE, IMPOSTOR, KUBE_DNS, PROMETHEUS, MONITORING_OTHER, STRAY_PROMETHEUS)
}
# The scrapes: each tier's port named http, from the Prometheus pods only.
SCRAPES = {("prometheus", "webtier", 8800, TCP), ("prometheus", "apitier", 8801, TCP)}
EXPECTED = {
    "base": NEEDED,
    "same-node": NEEDED,
    "nodeport": NEEDED | NODEPORT,
    "prometheus": NEEDED | SCRAPES,
}


def lab_pods(objects: list[Obj]) -> list[Endpoint]:
    pods = []
    for index, workload in enumerate(workloads(objects), start=1):
        template = pod_template(workload)
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        pods.append(
            Endpoint(
                workload["metadata"]["name"],
                f"10.244.1.{index}",
                workload["metadata"]["namespace"],
                template["metadata"]["labels"],
                ports,
            )
        )
    return pods


def cluster(objects: list[Obj]) -> Cluster:
    namespaces = {
        obj["metadata"]["name"]: obj["metadata"].get("labels", {})
        for obj in of_kind(objects, "Namespace")
    }
    return Cluster(
        {**namespaces, "kube-system": {}, "default": {}, MONITORING: {}},
        of_kind(objects, "NetworkPolicy"),
    )


def candidate_flows(pods: list[Endpoint]) -> list[Flow]:
    """Every flow into or out of a lab pod: to each declared port (and some undeclared ones)
    of each pod, DNS, and the outside world."""
    everyone = [*pods, KUBE_DNS, IMPOSTOR, OUTSIDE, PROMETHEUS, MONITORING_OTHER, STRAY_PROMETHEUS]
    flows = []
    for src in everyone:
        for dst in everyone:
            if src is dst or not (src.namespace == NAMESPACE or dst.namespace == NAMESPACE):
                continue
            ports = {(port, TCP) for port in dst.ports.values()} | {(9999, TCP)}
            if dst is KUBE_DNS:
                ports |= {(53, UDP)}
            if dst is OUTSIDE:
                ports |= {(443, TCP), (80, TCP), (53, UDP)}
            if dst.name == "jaeger":
                ports |= {(port, TCP) for port in JAEGER_UNDECLARED}
            flows += [Flow(src, dst, port, protocol) for port, protocol in sorted(ports)]
    return flows


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_exactly_the_needed_flows_are_allowed(variant: str) -> None:
    objects = render(variant)
    policies = cluster(objects)
    flows = candidate_flows(lab_pods(objects))
    allowed = {(f.src.name, f.dst.name, f.port, f.protocol) for f in flows if policies.allows(f)}
    assert allowed == EXPECTED[variant], (
        f"allowed but not expected: {sorted(allowed - EXPECTED[variant])}; "
        f"expected but denied: {sorted(EXPECTED[variant] - allowed)}"
    )
    denied = {(f.src.name, f.dst.name, f.port) for f in flows if not policies.allows(f)}
    # The ones the issue names, spelled out.
    assert ("traffic", "apitier", 8801) in denied
    assert ("webtier", "jaeger", 16686) in denied
    assert ("outside", "apitier", 8801) in denied
    assert ("impostor", "apitier", 8801) in denied
    assert ("monitoring-other", "apitier", 8801) in denied
    assert ("stray-prometheus", "apitier", 8801) in denied
    assert ("prometheus", "jaeger", 4318) in denied


def test_scrapes_reach_the_servicemonitors_targets() -> None:
    """Derived from the ServiceMonitor rather than listed: every pod behind each endpoint's
    Service port, on the container port it lands on, is open to the Prometheus pods; and the
    scrape policy opens exactly the ports the monitor scrapes, on exactly the pods it selects."""
    objects = render("prometheus")
    pods = {pod.name: pod for pod in lab_pods(objects)}
    policies = cluster(objects)
    [monitor] = of_kind(objects, "ServiceMonitor")
    targets = set()
    for service in of_kind(objects, "Service"):
        if not selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
            continue
        for endpoint in monitor["spec"]["endpoints"]:
            [port] = [p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
            for backend, number in backends(objects, service, port):
                targets.add((backend.workload["metadata"]["name"], number))
    assert targets == {("webtier", 8800), ("apitier", 8801)}
    for name, number in targets:
        assert policies.allows(Flow(PROMETHEUS, pods[name], number)), (name, number)
    [scrape] = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p not in of_kind(render("base"), "NetworkPolicy")
    ]
    selected = {p.name for p in pods.values() if selects(scrape["spec"]["podSelector"], p.labels)}
    assert selected == {name for name, _ in targets}
    alone = Cluster({NAMESPACE: {}, MONITORING: {}}, [scrape])
    opened = {
        (pod.name, number)
        for pod in pods.values()
        for number in {*pod.ports.values(), 9999}
        if pod.name in selected and alone.allows(Flow(PROMETHEUS, pod, number))
    }
    assert opened == targets


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_the_configured_flows_are_allowed(variant: str) -> None:
    """Derived from the manifests rather than listed: each URL a container is configured with
    (API_URL, the OTLP endpoint, the traffic's target) resolves to pods and ports the policies
    let it reach, and every container that names a Service can resolve it."""
    objects = render(variant)
    pods = {pod.name: pod for pod in lab_pods(objects)}
    policies = cluster(objects)
    checked = 0
    for c in containers(objects):
        environment = container_environment(objects, c)
        words = [*environment.values(), *c.spec.get("command", []), *c.spec.get("args", [])]
        urls = [w for w in words if w.startswith("http://") and ".svc.cluster.local" in w]
        source = pods[c.workload["metadata"]["name"]]
        for url in urls:
            service, port = service_for_url(objects, url)
            for backend, number in backends(objects, service, port):
                flow = Flow(source, pods[backend.workload["metadata"]["name"]], number)
                assert policies.allows(flow), f"{url}: {flow} is denied"
                checked += 1
        if urls:
            for protocol in (UDP, TCP):
                assert policies.allows(Flow(source, KUBE_DNS, 53, protocol)), source.name
    assert checked == 4  # webtier -> apitier, both tiers -> jaeger, traffic -> webtier


def test_no_policy_in_the_fault_overlay() -> None:
    """The fault agent runs in the node's network namespace, where NetworkPolicies do not
    apply; the overlay adds none."""
    assert not of_kind(render("fault"), "NetworkPolicy")


# -- the evaluator itself


def policy(name: str, spec: dict[str, Any], namespace: str = "ns") -> Obj:
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


A = Endpoint("a", "10.0.0.1", "ns", {"app": "a"})
B = Endpoint("b", "10.0.0.2", "ns", {"app": "b"}, {"http": 8080})
C = Endpoint("c", "10.0.0.3", "other", {"app": "a"})
NAMESPACES = {"ns": {}, "other": {"team": "x"}}


def test_no_policy_allows_everything() -> None:
    assert Cluster(NAMESPACES, []).allows(Flow(A, B, 1234, UDP))


def test_a_policy_type_only_closes_its_direction() -> None:
    deny_in = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    evaluator = Cluster(NAMESPACES, [deny_in])
    assert not evaluator.allows(Flow(A, B, 8080))
    assert evaluator.allows(Flow(A, OUTSIDE, 443))  # egress untouched
    # policyTypes left out: Ingress, plus Egress when there are egress rules
    implied = policy("implied", {"podSelector": {"matchLabels": {"app": "a"}}, "egress": []})
    assert not Cluster(NAMESPACES, [implied]).allows(Flow(A, OUTSIDE, 443))


def test_peers_namespace_and_pod_selectors() -> None:
    same_entry = {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {}}
    rule = {"from": [same_entry], "ports": [{"port": 8080}]}
    evaluator = Cluster(
        NAMESPACES, [policy("p", {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [rule]})]
    )
    assert evaluator.allows(Flow(C, B, 8080))  # namespace matches
    assert not evaluator.allows(Flow(A, B, 8080))  # own namespace, not selected
    assert not evaluator.allows(Flow(C, B, 8081))
    # a podSelector alone means the policy's own namespace, whatever the labels elsewhere
    own = {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}
    evaluator = Cluster(NAMESPACES, [policy("p", {"podSelector": {}, "ingress": [own]})])
    assert evaluator.allows(Flow(A, B, 1))
    assert not evaluator.allows(Flow(C, B, 1))


def test_ports_by_name_range_and_protocol() -> None:
    rules = [
        {"ports": [{"port": "http"}]},
        {"ports": [{"port": 9000, "endPort": 9010}]},
        {"ports": [{"port": 53, "protocol": "UDP"}]},
    ]
    evaluator = Cluster(NAMESPACES, [policy("p", {"podSelector": {}, "ingress": rules})])
    assert evaluator.allows(Flow(A, B, 8080))  # B's port named http
    assert evaluator.allows(Flow(A, B, 9010))
    assert not evaluator.allows(Flow(A, B, 9011))
    assert evaluator.allows(Flow(A, B, 53, UDP))
    assert not evaluator.allows(Flow(A, B, 53, TCP))


def test_ip_blocks() -> None:
    rule = {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}
    evaluator = Cluster(NAMESPACES, [policy("p", {"podSelector": {}, "ingress": [rule]})])
    assert evaluator.allows(Flow(OUTSIDE, B, 8080))
    assert not evaluator.allows(Flow(A, B, 8080))  # 10.0.0.1 is excepted
    v6 = Endpoint("v6", "2001:db8::1")
    assert not evaluator.allows(Flow(v6, B, 8080))


def test_egress_and_ingress_must_both_allow() -> None:
    only_in = policy(
        "in",
        {"podSelector": {}, "ingress": [{}], "egress": [], "policyTypes": ["Ingress", "Egress"]},
    )
    assert not Cluster(NAMESPACES, [only_in]).allows(Flow(A, B, 80))
    both = policy("both", {"podSelector": {}, "ingress": [{}], "egress": [{}]})
    assert Cluster(NAMESPACES, [both]).allows(Flow(A, B, 80))
