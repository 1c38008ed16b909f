"""The cluster path, executed as far as one machine allows: the three images built from the
real Dockerfiles (on a Debian base bootstrapped here, with the locked wheels and no index), then
run on podman the way `kubectl kustomize k8s/` says (tests/k8s/pods.py): the API and web tiers,
`netgap collect` from the netgap image playing Jaeger on Jaeger's ports, and the traffic
Deployment's own command. One page through the web container, its trace read back from the
collector, the traffic for a few seconds, then SIGTERM as the kubelet sends it.

Set-up (root, apt-get, a Debian mirror, PyPI) happens once and is cached outside the repository
(tests/k8s/engine.py); the summary at the end of the run names each check and lists the image
sizes and the build and run times. What only a real cluster shows: docs/cluster.md.
"""

import os
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.k8s import engine as engines
from tests.k8s.dockerfiles import IMAGES, ROOT
from tests.k8s.manifests import Obj, container, container_environment, render, workloads
from tests.k8s.pods import Cluster, Pod, grace_s, probe, user, wait_ready
from tests.k8s.smoke_report import note

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TRAFFIC_S = 5.0
SPANS_PER_PAGE = 5  # web SERVER + its work + CLIENT, API SERVER + its work
SPAN_WAIT_S = 20.0  # the SDK's batch delay is 5 s; the collector answers within a second


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render("root")


@pytest.fixture(scope="module")
def images(engine: engines.Engine) -> dict[str, str]:
    """Image name as the manifests write it -> the image id built now."""
    start = time.monotonic()
    base = os.environ.get("NETGAP_SMOKE_BASE") or engines.base_image(engine)
    python = engines.python_of(engine, base)
    wheels = engines.download_wheels(ROOT / "requirements.lock", python)
    seconds = time.monotonic() - start
    note(f"set-up: base {base} (Python {python.version}) and the wheels in {seconds:.1f} s")
    built = {}
    for dockerfile, repository in IMAGES.items():
        tag = f"{repository}:{VERSION}"
        result = engines.build(engine, ROOT, dockerfile, tag, base, wheels)
        size = engine.image_size(result.image_id)
        note(f"built {tag} from {dockerfile} in {result.seconds:.1f} s: {size / 1e6:.0f} MB")
        built[tag] = result.image_id
    return built


@dataclass
class Stack:
    cluster: Cluster
    collector: Pod
    api: Pod
    web: Pod

    def url(self, pod: Pod, port_name: str, path: str = "/") -> str:
        return f"http://{pod.ip}:{pod.container.port(port_name)}{path}"


@pytest.fixture(scope="module")
def stack(engine: engines.Engine, objects: list[Obj], images: dict[str, str]) -> Iterator[Stack]:
    start = time.monotonic()
    cluster = Cluster(engine, objects, f"netgap-smoke-{os.getpid()}")
    try:
        jaeger = container(objects, "jaeger")
        collect = [
            "netgap",
            "collect",
            "--otlp-http",
            f"0.0.0.0:{jaeger.port('otlp-http')}",
            "--otlp-grpc",
            f"0.0.0.0:{jaeger.port('otlp-grpc')}",
            "--query",
            f"0.0.0.0:{jaeger.port('ui')}",
            "--db",
            "/tmp/traces.db",  # noqa: S108 (the pod's emptyDir)
        ]
        collector = cluster.start(jaeger, images[f"netgap/netgap:{VERSION}"], "jaeger", collect)
        wait_ready(cluster, collector, jaeger.port("ui"), "/api/v3/services")
        pods = {}
        for name in ("apitier", "webtier"):  # in the order they call each other
            c = container(objects, name)
            pods[name] = cluster.start(c, images[c.spec["image"]], name)
            wait_ready(cluster, pods[name], *probe(c))
        seconds = time.monotonic() - start
        note(f"ran the collector, apitier and webtier, all ready in {seconds:.1f} s")
        yield Stack(cluster, collector, pods["apitier"], pods["webtier"])
    finally:
        cluster.close()


def get_page(stack: Stack) -> tuple[httpx.Response, str]:
    """One page from the web container, and the trace id its traceresponse header names."""
    response = httpx.get(stack.url(stack.web, "http"), timeout=30, trust_env=False)
    header = response.headers.get("traceresponse", "")
    parts = header.split("-")
    assert len(parts) == 4, f"traceresponse {header!r}"
    assert len(parts[1]) == 32, f"traceresponse {header!r}"
    assert int(parts[3], 16) & 1, f"sampled out: {header}"
    return response, parts[1]


def trace_spans(stack: Stack, trace_id: str, want: int) -> list[tuple[dict[str, Any], Obj]]:
    """(resource attributes, span) pairs of the trace from the collector's api_v3, once `want`
    have arrived or SPAN_WAIT_S has passed."""
    url = stack.url(stack.collector, "ui", f"/api/v3/traces/{trace_id}")
    deadline = time.monotonic() + SPAN_WAIT_S
    found: list[tuple[dict[str, Any], Obj]] = []
    while True:
        response = httpx.get(url, timeout=10, trust_env=False)
        if response.status_code == 200:
            found = [
                (attributes(resource.get("resource", {})), span)
                for resource in response.json()["result"]["resourceSpans"]
                for scope in resource.get("scopeSpans", [])
                for span in scope.get("spans", [])
            ]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def attributes(obj: Obj) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in obj.get("attributes", [])}


@pytest.fixture(scope="module")
def first_page(stack: Stack) -> tuple[httpx.Response, str]:
    return get_page(stack)


def test_images_build_from_the_dockerfiles_as_the_manifests_name_them(
    objects: list[Obj], images: dict[str, str]
) -> None:
    ours = {
        c["image"]
        for w in workloads(objects)
        for c in w["spec"]["template"]["spec"]["containers"]
        if c["image"].startswith("netgap/")
    }
    assert ours == set(images), "the manifests name images the Dockerfiles do not build"


def test_images_run_as_the_pods_user(
    engine: engines.Engine, objects: list[Obj], images: dict[str, str]
) -> None:
    """The image's own USER is the pods' runAsUser:runAsGroup, numeric and not root: what
    runAsNonRoot verifies when a pod does not set the user, and what `docker run` gets."""
    for name in ("apitier", "webtier", "traffic"):
        c = container(objects, name)
        uid, gid = user(c)
        assert uid != 0
        image_user = engine.run(
            "image", "inspect", "--format", "{{.Config.User}}", images[c.spec["image"]]
        ).stdout.strip()
        assert image_user == f"{uid}:{gid}", f"{c.spec['image']} runs as {image_user!r}"


def test_web_container_serves_the_page_with_traceresponse(
    stack: Stack, first_page: tuple[httpx.Response, str]
) -> None:
    response, trace_id = first_page
    assert response.status_code == 200, response.text[:2000]
    assert 'id="api-body"' in response.text  # the API container's answer is on the page
    web_env = {e["name"]: e.get("value") for e in stack.web.container.env()}
    assert f"{web_env['JAEGER_UI_URL']}/trace/{trace_id}" in response.text


def test_collector_has_the_trace_from_both_containers(
    stack: Stack, first_page: tuple[httpx.Response, str]
) -> None:
    _, trace_id = first_page
    spans = trace_spans(stack, trace_id, SPANS_PER_PAGE)
    assert len(spans) == SPANS_PER_PAGE, [(r.get("service.name"), s["name"]) for r, s in spans]
    pods = {r["service.name"]: r["k8s.pod.name"] for r, _ in spans}
    assert pods == {"webtier": stack.web.name, "apitier": stack.api.name}
    kinds = sorted((r["service.name"], s.get("kind")) for r, s in spans)
    assert ("webtier", 3) in kinds, kinds  # SPAN_KIND_CLIENT: the call to the API
    assert ("apitier", 2) in kinds, kinds  # SPAN_KIND_SERVER: the API answered it


def test_traffic_deployment_command_runs_against_the_web_container(
    stack: Stack, objects: list[Obj], images: dict[str, str]
) -> None:
    c = container(objects, "traffic")
    pod = stack.cluster.start(c, images[c.spec["image"]], "traffic")
    time.sleep(TRAFFIC_S)
    assert stack.cluster.running(pod), stack.cluster.logs(pod)
    code, seconds = stack.cluster.stop(pod, grace_s(c))
    log = stack.cluster.logs(pod)
    assert code == 0, log
    summary = dict(
        line.split(None, 1) for line in log.splitlines() if line[:1].isalpha() and " " in line
    )
    rate = float(container_environment(objects, c)["LOAD_RATE"])
    assert int(summary["errors"]) == 0, log
    assert int(summary["ok"]) == int(summary["sent"]) >= rate, log  # at least a second's worth
    counts = f"{summary['sent']} sent, {summary['ok']} ok"
    note(f"traffic: {counts} in {TRAFFIC_S:g} s; SIGTERM to exit 0 in {seconds:.1f} s")


def test_tiers_stop_on_sigterm_within_grace_and_flush_their_spans(stack: Stack) -> None:
    """A page just before SIGTERM whose spans the collector does not have yet (the SDK
    batches for 5 s): they reach it only if each tier flushes on the way out."""
    for _ in range(3):  # the batch timer may fire between the page and the check
        _, trace_id = get_page(stack)
        if not trace_spans(stack, trace_id, want=0):
            break
    else:
        raise AssertionError("every page's spans were exported at once: no flush to test")
    for pod in (stack.web, stack.api):
        grace = grace_s(pod.container)
        code, seconds = stack.cluster.stop(pod, grace)
        assert code == 0, (
            f"{pod.name}: exit {code} after {seconds:.1f} s\n{stack.cluster.logs(pod)}"
        )
        assert seconds < grace
        role = pod.name.rsplit("-", 1)[-1]
        note(f"{role}: SIGTERM to exit 0 in {seconds:.1f} s (grace {grace:g} s)")
    spans = trace_spans(stack, trace_id, SPANS_PER_PAGE)
    assert len(spans) == SPANS_PER_PAGE, "spans lost at shutdown"
    code, _ = stack.cluster.stop(stack.collector, grace_s(stack.collector.container))
    assert code == 0, stack.cluster.logs(stack.collector)
