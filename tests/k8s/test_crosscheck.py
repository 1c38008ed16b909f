"""The rendered manifests against the code they run: ports, Services, URLs, probes, the
environment the tiers read, selectors, images, and the fault agent's Pod."""

import asyncio
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import httpx
import opentelemetry.environment_variables as otel_api_env
import opentelemetry.sdk.environment_variables as otel_sdk_env
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource

from apitier import settings as api_settings
from apitier.app import create_app as create_api
from netgap.cli import build_parser
from netgap.fault import k8s as fault_k8s
from netgap.fault import tc
from netgap.fault.spec import PRESETS
from tests.k8s import dockerfiles
from tests.k8s.manifests import (
    APP_VARIANTS,
    FAULT_NAMESPACE,
    FIELD_VALUES,
    NAMESPACE,
    ROOT,
    Obj,
    backends,
    config_map_data,
    container,
    container_environment,
    containers,
    named,
    of_kind,
    pod_template,
    references,
    render,
    selected_workloads,
    selects,
    service_for_url,
    workloads,
)
from tierkit.telemetry import TelemetrySettings
from webtier import settings as web_settings
from webtier.app import create_app as create_web

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
JAEGER_IMAGE = "jaegertracing/jaeger:2.20.0"
JAEGER_HEALTH = ("/status", 13133)  # shared/jaeger/FACTS.md
OTLP_PORT_NAMES = {"http/protobuf": "otlp-http", "grpc": "otlp-grpc"}
OTLP_PORTS = {"otlp-http": 4318, "otlp-grpc": 4317}
TRACE_BYTES = 10_000  # a few-span trace in Jaeger's memory store (FACTS.md)
# Variables a container may set although no netgap code reads them, and who reads them.
READ_ELSEWHERE = {"jaeger": {"GOMEMLIMIT": "the Go runtime: a soft memory limit"}}

TIERS: dict[str, tuple[ModuleType, Callable[[Any], FastAPI]]] = {
    "apitier": (api_settings, create_api),
    "webtier": (web_settings, create_web),
}


class Recording(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def tier_settings(name: str, environment: Mapping[str, str]) -> tuple[Any, set[str]]:
    """The tier's settings from `environment`, and every variable it looked at (with this
    environment and with an empty one, so both sides of each default are seen)."""
    module = TIERS[name][0]
    read: set[str] = set()
    for env in (environment, {}):
        recording = Recording(env)
        module.Settings.from_env(recording)
        read |= recording.read
    return module.Settings.from_env(environment), read


def otel_sdk_variables() -> set[str]:
    names = {
        value
        for module in (otel_sdk_env, otel_api_env)
        for key, value in vars(module).items()
        if key.startswith("OTEL_") and isinstance(value, str)
    }
    return names


def get_status(name: str, path: str) -> int:
    """What the tier answers to GET `path` (in process, tracing off)."""
    module, create_app = TIERS[name]
    app = create_app(module.Settings.from_env({"OTEL_SDK_DISABLED": "true"}))

    async def get() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tier") as client:
            return (await client.get(path)).status_code

    return asyncio.run(get())


def tier_environment(objects: list[Obj], name: str) -> dict[str, str]:
    return container_environment(objects, container(objects, name))


# -- ports and Services


@pytest.mark.parametrize("variant", APP_VARIANTS)
@pytest.mark.parametrize("tier", sorted(TIERS))
def test_container_port_is_the_port_the_tier_listens_on(variant: str, tier: str) -> None:
    objects = render(variant)
    c = container(objects, tier)
    settings, _ = tier_settings(tier, container_environment(objects, c))
    assert c.port("http") == settings.server.port == TIERS[tier][0].DEFAULT_PORT
    # The tiers listen on 127.0.0.1 unless told otherwise: unreachable in a pod.
    assert settings.server.host == "0.0.0.0"  # noqa: S104 (checks the pod setting)
    expose = dockerfiles.final_stage(ROOT / f"Dockerfile.{tier[:3]}").one("EXPOSE").value
    assert int(expose) == c.port("http")


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_service_target_ports_are_named_container_ports(variant: str) -> None:
    objects = render(variant)
    for service in of_kind(objects, "Service"):
        for port in service["spec"]["ports"]:
            for c, number in backends(objects, service, port):
                protocol = next(
                    p.get("protocol", "TCP")
                    for p in c.spec["ports"]
                    if p.get("name") == port["targetPort"]
                )
                assert protocol == port.get("protocol", "TCP")
                assert number > 0


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_web_tier_calls_the_api_service_by_its_dns_name(variant: str) -> None:
    objects = render(variant)
    web = container(objects, "webtier")
    settings, _ = tier_settings("webtier", container_environment(objects, web))
    service, port = service_for_url(objects, settings.api.url)
    assert service["metadata"]["name"] == "apitier"
    assert service["metadata"]["namespace"] == web.namespace  # the rendered namespace
    [(api, number)] = {id(c.workload): (c, n) for c, n in backends(objects, service, port)}.values()
    api_settings_, _ = tier_settings("apitier", container_environment(objects, api))
    assert number == api_settings_.server.port


@pytest.mark.parametrize("variant", APP_VARIANTS)
@pytest.mark.parametrize("tier", sorted(TIERS))
def test_traces_go_to_jaegers_otlp_port(variant: str, tier: str) -> None:
    objects = render(variant)
    environment = tier_environment(objects, tier)
    telemetry = TelemetrySettings.from_env(environment, default_service=tier)
    assert not telemetry.disabled
    assert telemetry.exporters == ("otlp",)
    base = environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if telemetry.protocol == "http/protobuf":
        assert telemetry.endpoint == base.rstrip("/") + "/v1/traces"
    service, port = service_for_url(objects, base)
    assert port["targetPort"] == OTLP_PORT_NAMES[telemetry.protocol]
    for c, number in backends(objects, service, port):
        assert c.spec["image"] == JAEGER_IMAGE
        assert number == OTLP_PORTS[port["targetPort"]]


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_traffic_loads_the_web_service(variant: str) -> None:
    objects = render(variant)
    traffic = container(objects, "traffic")
    environment = container_environment(objects, traffic)
    argv = [re.sub(r"\$\((\w+)\)", lambda m: environment[m[1]], a) for a in traffic.spec["command"]]
    assert argv[0] == "netgap"
    args = build_parser().parse_args(argv[1:])  # the real command line, as netgap reads it
    assert args.command == "load"
    assert args.duration == 0  # until stopped
    assert args.rate == float(environment["LOAD_RATE"]) > 0
    service, port = service_for_url(objects, args.url)
    assert service["metadata"]["name"] == "webtier"
    assert {c.workload["metadata"]["name"] for c, _ in backends(objects, service, port)} == {
        "webtier"
    }
    # A slow API must show as the web tier's 504, not as the load generator giving up first.
    web, _ = tier_settings("webtier", tier_environment(objects, "webtier"))
    assert args.timeout > web.api.timeout_s
    assert traffic.pod["spec"]["terminationGracePeriodSeconds"] > args.timeout


# -- probes


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_probes_hit_real_routes(variant: str) -> None:
    objects = render(variant)
    for c in containers(objects):
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.spec.get(kind)
            if probe is None:
                continue
            http = probe["httpGet"]
            port = c.port(http["port"]) if isinstance(http["port"], str) else http["port"]
            name = c.workload["metadata"]["name"]
            if name in TIERS:
                assert get_status(name, http["path"]) == 200, f"{c.where} {kind}"
                assert port == c.port("http")
            else:
                assert c.spec["image"] == JAEGER_IMAGE, f"{c.where}: whose route is {http}?"
                assert (http["path"], port) == JAEGER_HEALTH


# -- metrics scrapes


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_scrape_annotations_point_at_the_metrics_route(variant: str) -> None:
    """The tiers' pods, and only theirs, ask to be scraped, on the port the tier listens on (the
    container port named http, the PORT it is given) at a path the tier serves metrics on."""
    objects = render(variant)
    annotated = {
        w["metadata"]["name"]
        for w in workloads(objects)
        if pod_template(w)["metadata"].get("annotations", {}).get("prometheus.io/scrape")
    }
    assert annotated == set(TIERS)
    for tier in sorted(TIERS):
        c = container(objects, tier)
        annotations = c.pod["metadata"]["annotations"]
        environment = container_environment(objects, c)
        settings, _ = tier_settings(tier, environment)
        assert annotations["prometheus.io/scrape"] == "true"
        port = annotations["prometheus.io/port"]
        assert port == str(c.port("http")) == environment["PORT"] == str(settings.server.port)
        assert settings.server.metrics, f"{tier}: METRICS_ENABLED is off, nothing to scrape"
        path = annotations["prometheus.io/path"]
        assert get_status(tier, path) == 200, f"{tier} serves no metrics at {path}"


def _duration_s(text: str) -> float:
    match = re.fullmatch(r"(?=.)(?:(\d+)m)?(?:(\d+)s)?", text)
    assert match, f"{text}: expected a duration such as 15s or 1m"
    return 60 * int(match[1] or 0) + int(match[2] or 0)


def test_service_monitor_scrapes_both_tiers_metrics() -> None:
    """The ServiceMonitor selects the two tiers' Services and no other, each endpoint names a
    port every selected Service has, and that port reaches the tier's http port, where the
    path is the metrics route."""
    objects = render("prometheus")
    [monitor] = of_kind(objects, "ServiceMonitor")
    spec = monitor["spec"]
    assert monitor["metadata"]["namespace"] == NAMESPACE
    # Without a namespaceSelector the Operator looks in the monitor's own namespace only.
    assert spec.get("namespaceSelector", {"matchNames": [NAMESPACE]}) == {"matchNames": [NAMESPACE]}
    services = [
        s
        for s in of_kind(objects, "Service")
        if s["metadata"]["namespace"] == NAMESPACE
        and selects(spec["selector"], s["metadata"].get("labels", {}))
    ]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(TIERS)
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert endpoint.get("scheme", "http") == "http"
        interval = _duration_s(endpoint["interval"])
        assert 0 < _duration_s(endpoint.get("scrapeTimeout", "10s")) <= interval <= 60
        for service in services:
            name = service["metadata"]["name"]
            ports = [p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
            assert len(ports) == 1, f"Service {name} has no port named {endpoint['port']!r}"
            [(c, number)] = backends(objects, service, ports[0])
            assert c.workload["metadata"]["name"] == name
            assert number == c.port("http")
            assert get_status(name, endpoint["path"]) == 200, f"{name}: {endpoint['path']}"


# -- the environment


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_every_variable_set_is_read(variant: str) -> None:
    """Each variable a container gets is read by the tier's settings, by the OpenTelemetry SDK,
    by a named other reader (READ_ELSEWHERE), or only exists to be expanded into another
    variable or the command ($(VAR)), where it is defined before its use."""
    objects = render(variant)
    sdk = otel_sdk_variables()
    for c in containers(objects):
        name = c.workload["metadata"]["name"]
        environment = container_environment(objects, c)
        readers = set(READ_ELSEWHERE.get(name, {}))
        if name in TIERS:
            _, read = tier_settings(name, environment)
            readers |= read | sdk
        defined: set[str] = set()
        helpers: set[str] = set()
        for source in c.spec.get("envFrom", []):
            defined |= set(config_map_data(objects, source["configMapRef"]["name"], c.namespace))
        for var in c.env():
            value = str(var.get("value", ""))
            for ref in references(value):
                assert ref in defined, f"{c.where}: {var['name']} uses $({ref}) before it is set"
                helpers.add(ref)
            defined.add(var["name"])
        for word in [*c.spec.get("command", []), *c.spec.get("args", [])]:
            for ref in references(word):
                assert ref in defined, f"{c.where}: the command uses $({ref}), never set"
                helpers.add(ref)
        unread = set(environment) - readers - helpers
        assert not unread, f"{c.where} sets variables nothing reads: {sorted(unread)}"


@pytest.mark.parametrize("variant", APP_VARIANTS)
@pytest.mark.parametrize("tier", sorted(TIERS))
def test_spans_carry_pod_namespace_and_node(
    variant: str, tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the SDK makes of the rendered OTEL_* variables: the Downward API's pod name,
    namespace and node on every span, and host.name = the node, so the breakdown can tell
    whether a client and a server span were timed by the same clock."""
    environment = tier_environment(render(variant), tier)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        if key.startswith("OTEL_"):
            monkeypatch.setenv(key, value)
    attributes = Resource.create().attributes
    assert attributes["service.name"] == tier
    assert attributes["k8s.pod.name"] == FIELD_VALUES["metadata.name"]
    assert attributes["k8s.namespace.name"] == FIELD_VALUES["metadata.namespace"] == NAMESPACE
    assert attributes["k8s.node.name"] == attributes["host.name"] == FIELD_VALUES["spec.nodeName"]


# -- selectors


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_selectors_match_pod_labels(variant: str) -> None:
    objects = render(variant)
    deployments = of_kind(objects, "Deployment")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]
        assert selects(selector, pod_template(deployment)["metadata"]["labels"])
        selected = selected_workloads(objects, selector, NAMESPACE)
        assert selected == [deployment], (
            f"{deployment['metadata']['name']}'s selector takes other pods too"
        )
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        [target] = selected_workloads(objects, pdb["spec"]["selector"], NAMESPACE)
        assert target["metadata"]["name"] == pdb["metadata"]["name"]
        assert pdb["spec"]["maxUnavailable"] < target["spec"]["replicas"]
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = named(deployments, ref["kind"], ref["name"])
        replicas = target["spec"]["replicas"]
        assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]
        for metric in hpa["spec"]["metrics"]:
            resource = metric["resource"]["name"]
            for c in containers([target]):
                assert c.spec["resources"]["requests"][resource], "utilization needs a request"
    for policy in of_kind(objects, "NetworkPolicy"):
        assert selected_workloads(objects, policy["spec"]["podSelector"], NAMESPACE), policy
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selected_workloads(objects, peer["podSelector"], NAMESPACE), peer
    for workload in workloads(objects):
        affinity = pod_template(workload)["spec"].get("affinity", {})
        for term in _affinity_terms(affinity):
            for namespace in term.get("namespaces", [NAMESPACE]):
                assert selected_workloads(objects, term["labelSelector"], namespace), term


def _affinity_terms(affinity: Obj) -> list[Obj]:
    terms = []
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind, {})
        terms += rules.get("requiredDuringSchedulingIgnoredDuringExecution", [])
        terms += [
            weighted["podAffinityTerm"]
            for weighted in rules.get("preferredDuringSchedulingIgnoredDuringExecution", [])
        ]
    return terms


def test_web_and_api_prefer_different_nodes() -> None:
    """The base spreads the hop across nodes where it can (preferred, so a single-node cluster
    still runs everything); the same-node variant requires the opposite."""
    for variant, kind in (("base", "podAntiAffinity"), ("same-node", "podAffinity")):
        objects = render(variant)
        api = pod_template(named(objects, "Deployment", "apitier"))["spec"]["affinity"][kind]
        rules = api.get("preferredDuringSchedulingIgnoredDuringExecution") or [
            {"podAffinityTerm": term}
            for term in api["requiredDuringSchedulingIgnoredDuringExecution"]
        ]
        [rule] = rules
        assert rule["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        [web] = selected_workloads(objects, rule["podAffinityTerm"]["labelSelector"], NAMESPACE)
        assert web["metadata"]["name"] == "webtier"


# -- images, users, sizes, stops


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_images_are_the_dockerfiles_tags(variant: str) -> None:
    tags = {f"{repo}:{VERSION}": path for path, repo in dockerfiles.IMAGES.items()}
    for c in containers(render(variant)):
        image = c.spec["image"]
        if image == JAEGER_IMAGE:
            continue
        assert image in tags, f"{c.where}: {image} is none of the images Dockerfile.* build"
        # The Dockerfile's USER is who the pod says it runs as (runAsNonRoot needs a number).
        security = {**c.pod["spec"].get("securityContext", {}), **c.spec["securityContext"]}
        uid, gid = dockerfiles.user(ROOT / tags[image])
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert f"netgap/netgap:{VERSION}" == fault_k8s.IMAGE


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity, or a Go GOMEMLIMIT (which writes MiB where k8s says Mi)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|KiB|MiB|GiB)?", quantity)
    assert match, quantity
    unit = (match[2] or "").removesuffix("B")
    return int(match[1]) * {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


def test_jaeger_store_fits_its_memory_limit() -> None:
    objects = render("base")
    jaeger = container(objects, "jaeger")
    deployment = jaeger.workload
    assert jaeger.spec["image"] == JAEGER_IMAGE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    limit = _bytes(jaeger.spec["resources"]["limits"]["memory"])
    go_limit = _bytes(container_environment(objects, jaeger)["GOMEMLIMIT"])
    assert 0.8 * limit <= go_limit < limit
    prefix = "--set=extensions.jaeger_storage.backends.some_storage.memory.max_traces="
    [max_traces] = [int(a[len(prefix) :]) for a in jaeger.spec["args"] if a.startswith(prefix)]
    assert 0 < max_traces * TRACE_BYTES <= 0.6 * go_limit  # room for the UI, queries, GC


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_a_stopping_pod_finishes_its_requests(tier: str) -> None:
    """Rolling updates drop nothing: no pod leaves before its replacement is ready, the old one
    keeps serving while the endpoints update (preStop), then drains and flushes its spans
    (SHUTDOWN_GRACE_S each) before the kubelet's SIGKILL."""
    objects = render("base")
    c = container(objects, tier)
    settings, _ = tier_settings(tier, container_environment(objects, c))
    pre_stop = c.spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = c.pod["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop >= 3
    assert grace >= pre_stop + 2 * settings.server.shutdown_grace_s
    strategy = c.workload["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert "readinessProbe" in c.spec


# -- the fault overlay


def test_fault_job_runs_what_netgap_fault_k8s_renders() -> None:
    """The overlay's Pod is `netgap fault k8s --node N --preset article --target 0.0.0.0/0
    --target-port <the API tier's port>`'s Pod, field by field, placed next to a web tier pod
    by affinity instead of a node name."""
    objects = render("fault")
    [job] = of_kind(objects, "Job")
    agent_container = container(objects, "netgap-fault")
    api_port = container(render("base"), "apitier").port("http")
    args = build_parser().parse_args(agent_container.spec["command"][1:])
    assert args.node_agent
    assert args.preset is None
    agent = fault_k8s.Agent(
        PRESETS["article"], tc.Scope((tc.parse_network("0.0.0.0/0"),), api_port), args.ttl
    )
    expected = fault_k8s.node_pod(agent, node="NODE", namespace=FAULT_NAMESPACE)
    pod = pod_template(job)
    assert job["metadata"]["namespace"] == expected["metadata"]["namespace"]
    assert pod["metadata"]["labels"] == expected["metadata"]["labels"]
    spec = dict(pod["spec"])
    affinity = spec.pop("affinity")
    assert spec.pop("enableServiceLinks") is False
    [rendered] = spec.pop("containers")
    [wanted] = expected["spec"].pop("containers")
    assert expected["spec"].pop("nodeName") == "NODE"
    assert spec == expected["spec"]
    assert rendered.pop("resources")["limits"]
    assert rendered == wanted
    # On a node with a web tier pod: the faulted egress is the web tier's call to the API.
    [term] = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["namespaces"] == [NAMESPACE]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    [web] = selected_workloads(render("base"), term["labelSelector"], NAMESPACE)
    assert web["metadata"]["name"] == "webtier"
    # The Job gives up no later than the Pod's own deadline allows, and never retries.
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] >= pod["spec"]["activeDeadlineSeconds"]
    assert pod["spec"]["activeDeadlineSeconds"] == math.ceil(args.ttl) + fault_k8s.DEADLINE_MARGIN_S


def test_fault_namespace_is_the_only_privileged_one() -> None:
    levels = {
        obj["metadata"]["name"]: obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for variant in ("base", "fault")
        for obj in of_kind(render(variant), "Namespace")
    }
    assert levels == {NAMESPACE: "restricted", FAULT_NAMESPACE: "privileged"}


def test_a_wrong_probe_path_would_be_caught() -> None:
    assert get_status("apitier", "/healthz") == 200
    assert get_status("webtier", "/healthz") == 200
    assert get_status("apitier", "/health") == 404
