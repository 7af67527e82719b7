"""Admission, judged by the real API server: every invalid InferenceService is rejected, and the error names
the offending field and says what is wrong or how to fix it.

Each case starts from a valid manifest, breaks one thing, creates it with strict field validation (what
``kubectl apply`` and ``kubectl create`` send by default) and checks the error text. The examples shipped in
examples/ must pass the same admission.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from kubernetes.dynamic.exceptions import DynamicApiError

from tests.catalogue import INVALID, Case, broken, valid_manifest
from tests.cluster.helpers import ISVC, Kube
from tests.unit.test_property_builders import inference_service
from triton_operator.render import parse_inference_service

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
STRICT = [("fieldValidation", "Strict")]


def rejection(error: DynamicApiError) -> str:
    """The API server's message, from the Status body of the error."""
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body)
    return str(json.loads(body)["message"])


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_manifest_is_rejected_naming_the_field(kube: Kube, bad: Case) -> None:
    with pytest.raises(DynamicApiError) as raised:
        kube.resource(ISVC).create(body=bad.manifest, namespace=kube.namespace, query_params=list(STRICT))
    assert raised.value.status in (400, 422), raised.value
    message = rejection(raised.value)
    assert bad.field_path in message, message
    for hint in bad.hints:
        assert hint in message, message
    assert kube.get(ISVC, bad.manifest["metadata"]["name"]) is None


def test_catalogue_is_broad() -> None:
    assert len(INVALID) >= 30
    assert len({p.id for p in INVALID}) == len(INVALID)


def kubectl_apply(kube: Kube, manifest: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """``kubectl apply -f -`` as a user runs it (strict field validation is kubectl's default)."""
    return subprocess.run(
        [
            str(kube.cluster.bin_dir / "kubectl"),
            f"--kubeconfig={kube.cluster.kubeconfig}",
            "-n",
            kube.namespace,
            "apply",
            "-f",
            "-",
            *extra,
        ],
        input=yaml.safe_dump(manifest),
        capture_output=True,
        text=True,
        check=False,
    )


def test_kubectl_apply_rejects_a_misspelled_field(kube: Kube) -> None:
    manifest = broken(("spec.replica", 3))
    result = kubectl_apply(kube, manifest)
    assert result.returncode != 0
    assert 'unknown field "spec.replica"' in result.stderr, result.stderr
    assert kube.get(ISVC, "bad") is None


def test_kubectl_apply_shows_the_fix_for_a_cel_rule(kube: Kube) -> None:
    manifest = broken(("spec.autoscaling.minReplicas", 9), ("spec.autoscaling.maxReplicas", 3))
    result = kubectl_apply(kube, manifest)
    assert result.returncode != 0
    assert "spec.autoscaling.minReplicas" in result.stderr, result.stderr
    assert "less than or equal to spec.autoscaling.maxReplicas" in result.stderr, result.stderr


def test_the_base_manifest_of_the_catalogue_is_valid(kube: Kube) -> None:
    created = kube.resource(ISVC).create(
        body=valid_manifest("base"), namespace=kube.namespace, query_params=list(STRICT)
    )
    assert created.metadata.name == "base"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_accepted(kube: Kube, path: Path) -> None:
    assert EXAMPLES, "examples/ holds no manifests"
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        parse_inference_service(document)  # the operator reads it too
        result = kubectl_apply(kube, document, "--dry-run=server")
        assert result.returncode == 0, result.stderr
        created = kube.resource(ISVC).create(body=document, namespace=kube.namespace, query_params=list(STRICT))
        assert created.spec.to_dict() == document["spec"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=inference_service())
def test_generated_valid_manifests_are_admitted(kube: Kube, manifest: dict[str, Any]) -> None:
    """The property tests' strategy draws only manifests the API server admits, so the builders are tested on
    what can really exist (and pydantic and the CRD agree on them)."""
    metadata = {"name": manifest["metadata"]["name"]}
    body = {**manifest, "metadata": metadata}
    created = kube.resource(ISVC).create(body=body, namespace=kube.namespace, query_params=list(STRICT), dry_run="All")
    assert created.spec.to_dict() == manifest["spec"]
