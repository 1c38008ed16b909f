"""Validation of custom resources (kinds kubernetes-validate does not know) against the
CustomResourceDefinitions vendored in schemas/, as strictly as `kubectl apply` with server-side
field validation: the version's OpenAPI v3 schema, unknown fields rejected, metadata checked as
an ObjectMeta."""

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import referencing
import yaml  # type: ignore[import-untyped]
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    latest_version,
    schema_contents,
)
from openapi_schema_validator import OAS30Validator, oas30_format_checker

ValidationError = jsonschema.ValidationError  # what validate() raises

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The vendored CRDs: one file each, the upstream file verbatim under a one-line provenance note.
CRD_FILES = ("monitoring.coreos.com_servicemonitors.yaml",)
_BLOB = re.compile(r"\bblob ([0-9a-f]{40})\b")


def provenance(filename: str) -> tuple[str, bytes]:
    """The provenance line and the upstream file's bytes."""
    first, _, body = (SCHEMAS / filename).read_bytes().partition(b"\n")
    return first.decode(), body


def git_blob(data: bytes) -> str:
    """The object id git gives a file with these bytes (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def upstream_blob(filename: str) -> str:
    line, _ = provenance(filename)
    match = _BLOB.search(line)
    assert match, f"{filename}: the provenance line names no blob"
    return match[1]


@functools.cache
def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict OpenAPI v3 schema of that version."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for filename in CRD_FILES:
        _, body = provenance(filename)
        for crd in yaml.safe_load_all(body):
            if not crd:
                continue
            assert crd["kind"] == "CustomResourceDefinition", filename
            spec = crd["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                found[key] = strict(version["schema"]["openAPIV3Schema"])
    return found


def known(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in _schemas()


def strict(schema: Any) -> Any:
    """A copy of a structural schema that rejects unknown fields, as the API server's strict
    field validation does: every object with properties and no additionalProperties of its own,
    unless it preserves unknown fields, gets additionalProperties: false."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            copy[key] = {name: strict(sub) for name, sub in value.items()}  # names, not schemas
        elif key in ("enum", "default", "example"):
            copy[key] = value  # values, not schemas
        else:
            copy[key] = strict(value)
    if (
        "properties" in copy
        and "additionalProperties" not in copy
        and not copy.get("x-kubernetes-preserve-unknown-fields")
    ):
        copy["additionalProperties"] = False
    return copy


def validate(obj: dict[str, Any]) -> None:
    """Raises ValidationError (path and message) for an invalid custom resource."""
    schema = _schemas()[(obj["apiVersion"], obj["kind"])]
    # The CRD says only `metadata: {type: object}`; the API server checks it as an ObjectMeta.
    body = {key: value for key, value in obj.items() if key != "metadata"}
    OAS30Validator(schema, format_checker=oas30_format_checker).validate(body)
    _meta_validator().validate(obj.get("metadata", {}))


@functools.cache
def _meta_validator() -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict ObjectMeta, resolved as it resolves its own schemas."""
    directory = f"kubernetes-json-schema/v{latest_version()}-local-strict"
    schema = schema_contents(f"{directory}/objectmeta-meta-v1.json", latest_version())
    definitions = referencing.Resource.from_contents(
        schema_contents(f"{directory}/_definitions.json", latest_version())
    )
    registry: referencing.Registry[Any] = definitions @ referencing.Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)
