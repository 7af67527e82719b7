"""The checked-in CRD is what the models generate, and it is a schema `kubectl explain` can teach from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from triton_operator.api.crd import custom_resource_definition, render_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "inferenceservices.serving.triton-operator.dev.yaml"


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, prop in (schema.get("properties") or {}).items():
        nodes.extend(_walk(prop, f"{path}.{name}"))
    if "items" in schema:
        nodes.extend(_walk(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        nodes.extend(_walk(schema["additionalProperties"], f"{path}{{}}"))
    return nodes


def _schema() -> dict[str, Any]:
    return custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render_yaml(), "crds/ drifted: run `triton-operator crds -o crds/...yaml`"


def test_every_property_has_a_description() -> None:
    missing = [path for path, node in _walk(_schema()) if path and "." in path and not node.get("description")]
    # Items of plain lists and map values carry their parent's description.
    missing = [p for p in missing if not p.endswith(("[]", "{}")) and p != ".metadata"]
    assert missing == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not {"$ref", "anyOf", "default"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert node.get("additionalProperties") in (None,), path


def test_contract_fields_exist() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    for field in ("modelRepository", "models", "triton", "gpu", "nodeSelector", "tolerations", "affinity",
                  "topologySpreadConstraints", "priorityClassName", "serviceAccountName", "replicas",
                  "autoscaling", "disruptionBudget"):
        assert field in spec, field
    autoscaling = spec["autoscaling"]["properties"]
    for field in ("minReplicas", "maxReplicas", "targetQueueLatencyMilliseconds", "scaleUp", "scaleDown",
                  "engine", "metricsSource"):
        assert field in autoscaling, field
    status = _schema()["properties"]["status"]["properties"]
    for field in ("observedGeneration", "conditions", "phase", "replicas", "readyReplicas", "selector", "url",
                  "grpcUrl", "models", "autoscaler"):
        assert field in status, field


def test_subresources_names_and_columns() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["group"] == "serving.triton-operator.dev"
    assert crd["spec"]["names"]["shortNames"] == ["tis"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]][:6] == ["Ready", "Phase", "Replicas", "Models", "Queue latency", "Age"]
