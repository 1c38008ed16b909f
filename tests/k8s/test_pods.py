"""How tests/k8s/pods.py turns a rendered container into `podman run` (no engine needed): what
the image smoke test starts is what the manifests say, field by field."""

import json

import pytest

from tests.k8s.manifests import config_map_data, container, render
from tests.k8s.pods import quantity_bytes, quantity_cpus, run_argv

IMAGE = "sha256:0123"


def env_of(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, word in enumerate(argv) if word == "--env"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_web_tier_runs_as_its_pod_spec_says() -> None:
    objects = render("root")
    c = container(objects, "webtier")
    hosts = {"apitier.netgap.svc.cluster.local": "10.89.0.253"}
    argv = run_argv(objects, c, IMAGE, "webtier-a", "net", hosts)
    pod = c.pod["spec"]
    assert (
        f"--user={pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
        in argv
    )
    assert {"--read-only", "--read-only-tmpfs=false", "--cap-drop=all"} <= set(argv)
    assert "--security-opt=no-new-privileges" in argv
    size = quantity_bytes(pod["volumes"][0]["emptyDir"]["sizeLimit"])
    assert f"--mount=type=tmpfs,destination=/tmp,tmpfs-mode=1777,tmpfs-size={size}" in argv
    assert f"--memory={quantity_bytes(c.spec['resources']['limits']['memory'])}" in argv
    assert "--add-host=apitier.netgap.svc.cluster.local:10.89.0.253" in argv
    # preStop sleeps first: what is left of the grace period is the process's
    grace = (
        pod["terminationGracePeriodSeconds"] - c.spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    assert f"--stop-timeout={grace}" in argv
    env = env_of(argv)
    spec_env = {e["name"]: e["value"] for e in c.env() if "value" in e}
    assert env["API_URL"] == spec_env["API_URL"]
    assert "k8s.pod.name=webtier-a," in env["OTEL_RESOURCE_ATTRIBUTES"]  # $(POD_NAME) expanded
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger.netgap.svc.")  # envFrom
    assert argv[-1] == IMAGE  # no command in the spec: the image's own entrypoint
    assert not [word for word in argv if word.startswith("--entrypoint")]


def test_traffic_runs_its_command_with_the_rate_expanded() -> None:
    objects = render("root")
    c = container(objects, "traffic")
    argv = run_argv(objects, c, IMAGE, "traffic-a", "net", {})
    at = argv.index(IMAGE)
    command = c.spec["command"]
    assert argv[at - 1] == f"--entrypoint={json.dumps(command[:1])}"
    rate = config_map_data(
        objects, c.spec["env"][0]["valueFrom"]["configMapKeyRef"]["name"], "netgap"
    )
    expected = [rate["LOAD_RATE"] if word == "$(LOAD_RATE)" else word for word in command[1:]]
    assert argv[at + 1 :] == expected
    assert "$(LOAD_RATE)" in command  # the expansion is what is tested here


def test_a_replacement_command_keeps_the_pods_settings() -> None:
    objects = render("root")
    c = container(objects, "jaeger")
    argv = run_argv(objects, c, IMAGE, "jaeger-a", "net", {}, ["netgap", "collect"])
    assert argv[-3:] == ['--entrypoint=["netgap"]', IMAGE, "collect"]
    assert "--read-only" in argv
    assert "--cap-drop=all" in argv


@pytest.mark.parametrize(
    ("text", "expected"), [("16Mi", 16 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6), ("42", 42)]
)
def test_byte_quantities(text: str, expected: int) -> None:
    assert quantity_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("1", 1.0), ("500m", 0.5), ("2.5", 2.5)])
def test_cpu_quantities(text: str, expected: float) -> None:
    assert quantity_cpus(text) == expected


@pytest.mark.parametrize("text", ["500m", "lots", "1Ti"])
def test_not_a_byte_quantity(text: str) -> None:
    with pytest.raises(AssertionError):
        quantity_bytes(text)
