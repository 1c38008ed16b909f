"""`kubectl kustomize` renders k8s/ and every overlay, and each object it renders is valid
Kubernetes (kubernetes-validate --strict: unknown fields are errors too), or, for a custom
resource, valid against its CustomResourceDefinition as vendored in schemas/ (tests.k8s.crd)."""

from collections import Counter

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
    latest_version,
)

from tests.k8s import crd
from tests.k8s.manifests import (
    APP_VARIANTS,
    FAULT_NAMESPACE,
    K8S,
    NAMESPACE,
    VARIANTS,
    Obj,
    render,
)

# The newest release kubernetes-validate knows, and the oldest the manifests are for: 1.30
# made the preStop `sleep` action available without a feature gate.
OLDEST = "1.30.0"

BASE_KINDS = {
    "Namespace": 1,
    "ConfigMap": 2,
    "Service": 3,
    "Deployment": 4,
    "PodDisruptionBudget": 2,
    "HorizontalPodAutoscaler": 2,
    "NetworkPolicy": 7,
}
KINDS = {
    "root": BASE_KINDS,
    "base": BASE_KINDS,
    "nodeport": {**BASE_KINDS, "NetworkPolicy": 8},
    "same-node": BASE_KINDS,
    "fault": {"Namespace": 1, "Job": 1},
    "prometheus": {**BASE_KINDS, "NetworkPolicy": 8, "ServiceMonitor": 1},
}
CLUSTER_SCOPED = {"Namespace"}


def test_every_kustomization_is_a_tested_variant() -> None:
    found = {path.parent for path in K8S.rglob("kustomization.yaml")}
    assert found == set(VARIANTS.values())
    assert set(KINDS) == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_renders_the_expected_objects(variant: str) -> None:
    objects = render(variant)
    assert Counter(obj["kind"] for obj in objects) == KINDS[variant]
    keys = [
        (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]) for obj in objects
    ]
    assert len(keys) == len(set(keys)), "an object is rendered twice"


def test_root_is_the_base() -> None:
    """`kubectl apply -k k8s/` applies exactly the base."""
    assert render("root") == render("base")


@pytest.mark.parametrize("variant", APP_VARIANTS)
def test_app_objects_live_in_the_namespace(variant: str) -> None:
    for obj in render(variant):
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_the_fault_overlay_adds_only_its_own_namespace() -> None:
    objects = render("fault")
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["metadata"]["name"] == FAULT_NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == FAULT_NAMESPACE


def _validate(obj: Obj, version: str) -> None:
    where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
    if crd.known(obj):
        try:
            crd.validate(obj)
        except crd.ValidationError as exc:
            path = ".".join(str(part) for part in exc.absolute_path)
            pytest.fail(f"{where} does not match its CRD: {path}: {exc.message}")
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{where} is not valid Kubernetes {version}: {path}: {exc.message}")
    except SchemaNotFoundError as exc:
        pytest.fail(f"{where}: {exc.message}")


@pytest.mark.parametrize("version", [latest_version(), OLDEST])
@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"root"}))
def test_every_object_validates_strictly(variant: str, version: str) -> None:
    for obj in render(variant):
        _validate(obj, version)


def test_the_validator_is_strict() -> None:
    """A misspelt field fails: the check above would catch one in the manifests."""
    deployment = next(obj for obj in render("base") if obj["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(deployment, latest_version(), strict=True)


# -- custom resources


def test_vendored_crds_are_the_upstream_files() -> None:
    """Each file under schemas/ is its upstream file byte for byte below the provenance line
    (the blob id it names), so a schema cannot be loosened here to let a manifest through."""
    for filename in crd.CRD_FILES:
        line, body = crd.provenance(filename)
        assert line.startswith("# Vendored verbatim below this line: github.com/"), filename
        assert crd.git_blob(body) == crd.upstream_blob(filename), filename


def test_the_crd_validation_is_strict() -> None:
    """A misspelt field, a field at the wrong level, a malformed value or bad metadata fails
    the check above, as each would fail `kubectl apply` against the real CRD."""
    [monitor] = [obj for obj in render("prometheus") if obj["kind"] == "ServiceMonitor"]
    assert crd.known(monitor)
    crd.validate(monitor)
    endpoint = monitor["spec"]["endpoints"][0]
    broken: list[tuple[str, object]] = [
        ("intervall", "15s"),  # unknown field in an endpoint
        ("interval", "15 seconds"),  # not a Prometheus duration
        ("scheme", "tcp"),  # not in the enum
        ("port", 80),  # the Service port's name, a string
    ]
    for key, value in broken:
        bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [{**endpoint, key: value}]}}
        with pytest.raises(crd.ValidationError):
            crd.validate(bad)
    with pytest.raises(crd.ValidationError):
        crd.validate({**monitor, "spec": {**monitor["spec"], "jobLabell": "x"}})
    with pytest.raises(crd.ValidationError):
        crd.validate({**monitor, "metadata": {**monitor["metadata"], "lables": {}}})
    with pytest.raises(crd.ValidationError):
        crd.validate({**monitor, "spec": {"endpoints": monitor["spec"]["endpoints"]}})  # selector
