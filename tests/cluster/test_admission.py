"""Admission, judged by the real API server: every invalid InferenceService is rejected, and the error names
the offending field and says what is wrong or how to fix it.

Each case starts from a valid manifest, breaks one thing, creates it with strict field validation (what
``kubectl apply`` and ``kubectl create`` send by default) and checks the error text. The examples shipped in
examples/ must pass the same admission.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from kubernetes.dynamic.exceptions import DynamicApiError

from tests.cluster.helpers import ISVC, Kube
from tests.unit.test_property_builders import inference_service
from triton_operator.render import parse_inference_service

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
STRICT = [("fieldValidation", "Strict")]


def valid_manifest(name: str = "bad") -> dict[str, Any]:
    """A manifest admission accepts, using most fields, so each case below breaks exactly one thing."""
    return {
        "apiVersion": ISVC[0],
        "kind": ISVC[1],
        "metadata": {"name": name},
        "spec": {
            "modelRepository": {"uri": "s3://models/vision", "secretRef": {"name": "s3-credentials"}},
            "models": [
                {
                    "name": "resnet50",
                    "config": {
                        "maxBatchSize": 8,
                        "dynamicBatching": {"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [4, 8]},
                        "instanceGroups": [{"count": 2, "kind": "GPU"}],
                    },
                }
            ],
            "triton": {
                "args": ["--log-verbose=1"],
                "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}},
                "startupTimeoutSeconds": 600,
            },
            "gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "inference"},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "targetQueueLatencyMilliseconds": 50,
                "scaleDown": {"stabilizationWindowSeconds": 300},
                "engine": "Operator",
                "metricsSource": "Pods",
            },
            "disruptionBudget": {"maxUnavailable": 1},
        },
    }


_DELETE = object()


def broken(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The valid manifest with values set (or deleted, with ``_DELETE``) at dotted paths such as spec.gpu.count.

    A path segment that is a digit indexes a list.
    """
    manifest = valid_manifest()
    for path, value in changes:
        *parents, last = path.split(".")
        node: Any = manifest
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key: Any = int(last) if last.isdigit() else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)
    return manifest


@dataclass(frozen=True)
class Case:
    """An invalid manifest and what its rejection must say: the field's path and a hint of the fix."""

    manifest: dict[str, Any]
    field_path: str
    hints: tuple[str, ...] = ()


def case(id_: str, field_path: str, *hints: str, changes: tuple[tuple[str, Any], ...]) -> Any:
    """One parametrized case: ``changes`` break the valid manifest; the error must contain ``field_path`` and
    every hint."""
    return pytest.param(Case(broken(*changes), field_path, hints), id=id_)


NO_AUTOSCALING = ("spec.autoscaling", _DELETE)

INVALID = [
    # ---- wrong types ----
    case(
        "replicas-string",
        "spec.replicas",
        "must be of type integer",
        changes=(NO_AUTOSCALING, ("spec.replicas", "three")),
    ),
    case(
        "replicas-float", "spec.replicas", "must be of type integer", changes=(NO_AUTOSCALING, ("spec.replicas", 1.5))
    ),
    case("gpu-count-string", "spec.gpu.count", "must be of type integer", changes=(("spec.gpu.count", "1"),)),
    case("tolerations-not-a-list", "spec.tolerations", "must be of type array", changes=(("spec.tolerations", "gpu"),)),
    case("affinity-not-an-object", "spec.affinity", "must be of type object", changes=(("spec.affinity", "zone-a"),)),
    case("args-not-strings", "spec.triton.args[0]", "must be of type string", changes=(("spec.triton.args", [7]),)),
    # ---- unknown enum values ----
    case(
        "engine-keda", "spec.autoscaling.engine", '"Operator"', '"HPA"', changes=(("spec.autoscaling.engine", "KEDA"),)
    ),
    case(
        "metrics-source-datadog",
        "spec.autoscaling.metricsSource",
        '"Pods"',
        '"Prometheus"',
        changes=(("spec.autoscaling.metricsSource", "Datadog"),),
    ),
    case(
        "image-pull-policy-sometimes",
        "spec.triton.imagePullPolicy",
        '"IfNotPresent"',
        changes=(("spec.triton.imagePullPolicy", "Sometimes"),),
    ),
    case(
        "instance-group-kind-tpu",
        "spec.models[0].config.instanceGroups[0].kind",
        '"GPU"',
        '"CPU"',
        '"AUTO"',
        changes=(("spec.models.0.config.instanceGroups.0.kind", "TPU"),),
    ),
    case(
        "toleration-effect-unknown",
        "spec.tolerations[0].effect",
        '"NoSchedule"',
        '"NoExecute"',
        changes=(("spec.tolerations.0.effect", "NoWay"),),
    ),
    case(
        "toleration-operator-unknown",
        "spec.tolerations[0].operator",
        '"Exists"',
        '"Equal"',
        changes=(("spec.tolerations.0.operator", "In"),),
    ),
    # ---- tolerations the pod API would refuse later, in the Deployment ----
    case(
        "toleration-without-key-not-exists",
        "spec.tolerations[0].operator",
        "must be Exists when key is empty",
        changes=(("spec.tolerations", [{"operator": "Equal", "value": "ml"}]),),
    ),
    case(
        "toleration-exists-with-value",
        "spec.tolerations[0].value",
        "must be empty when operator is Exists",
        "use operator Equal",
        changes=(("spec.tolerations", [{"key": "dedicated", "operator": "Exists", "value": "ml"}]),),
    ),
    case(
        "toleration-seconds-without-no-execute",
        "spec.tolerations[0].tolerationSeconds",
        "only to effect NoExecute",
        changes=(("spec.tolerations", [{"key": "dedicated", "effect": "NoSchedule", "tolerationSeconds": 60}]),),
    ),
    # ---- out-of-range numbers ----
    case("gpu-count-negative", "spec.gpu.count", "greater than or equal to 0", changes=(("spec.gpu.count", -1),)),
    case("gpu-count-too-many", "spec.gpu.count", "less than or equal to 64", changes=(("spec.gpu.count", 65),)),
    case(
        "replicas-negative",
        "spec.replicas",
        "greater than or equal to 0",
        changes=(NO_AUTOSCALING, ("spec.replicas", -1)),
    ),
    case(
        "instance-count-zero",
        "spec.models[0].config.instanceGroups[0].count",
        "greater than or equal to 1",
        changes=(("spec.models.0.config.instanceGroups.0.count", 0),),
    ),
    case(
        "preferred-batch-size-zero",
        "spec.models[0].config.dynamicBatching.preferredBatchSizes[0]",
        "greater than or equal to 1",
        changes=(("spec.models.0.config.dynamicBatching.preferredBatchSizes", [0, 8]),),
    ),
    case(
        "max-batch-size-negative",
        "spec.models[0].config.maxBatchSize",
        "greater than or equal to 0",
        changes=(("spec.models.0.config.maxBatchSize", -8),),
    ),
    case(
        "min-replicas-zero",
        "spec.autoscaling.minReplicas",
        "greater than or equal to 1",
        changes=(("spec.autoscaling.minReplicas", 0),),
    ),
    case(
        "target-latency-zero",
        "spec.autoscaling.targetQueueLatencyMilliseconds",
        "greater than or equal to 1",
        changes=(("spec.autoscaling.targetQueueLatencyMilliseconds", 0),),
    ),
    case(
        "stabilization-window-over-an-hour",
        "spec.autoscaling.scaleDown.stabilizationWindowSeconds",
        "less than or equal to 3600",
        changes=(("spec.autoscaling.scaleDown.stabilizationWindowSeconds", 3601),),
    ),
    case(
        "startup-timeout-too-small",
        "spec.triton.startupTimeoutSeconds",
        "greater than or equal to 30",
        changes=(("spec.triton.startupTimeoutSeconds", 5),),
    ),
    # ---- autoscaling cross-field rules ----
    case(
        "min-replicas-above-max",
        "spec.autoscaling.minReplicas",
        "less than or equal to spec.autoscaling.maxReplicas",
        changes=(("spec.autoscaling.minReplicas", 5), ("spec.autoscaling.maxReplicas", 2)),
    ),
    case(
        "max-replicas-missing",
        "spec.autoscaling.maxReplicas",
        "Required value",
        changes=(("spec.autoscaling.maxReplicas", _DELETE),),
    ),
    case(
        "prometheus-without-url",
        "spec.autoscaling.metricsSource",
        "spec.autoscaling.prometheus.url is required",
        changes=(("spec.autoscaling.metricsSource", "Prometheus"),),
    ),
    case(
        "prometheus-url-not-http",
        "spec.autoscaling.prometheus.url",
        "http:// or https://",
        "http://prometheus.monitoring:9090",
        changes=(
            ("spec.autoscaling.metricsSource", "Prometheus"),
            ("spec.autoscaling.prometheus", {"url": "prom:9090"}),
        ),
    ),
    # ---- reserved Triton flags ----
    *[
        case(
            f"reserved-flag-{slug}",
            "spec.triton.args",
            "the operator sets them",
            "spec.modelRepository.uri",
            changes=(("spec.triton.args", args),),
        )
        for slug, args in [
            ("model-repository", ["--log-verbose=1", "--model-repository=/other"]),
            ("model-store", ["--model-store=/other"]),
            ("http-port-separate-value", ["--http-port", "9000"]),
            ("http-port-one-argument", ["--http-port 9000"]),
            ("grpc-port", ["--grpc-port=9001"]),
            ("metrics-port", ["--metrics-port=9002"]),
            ("model-control-mode-poll", ["--model-control-mode=poll"]),
            ("load-model", ["--load-model=x"]),
            ("abbreviated-model-repository", ["--model-repo=/other"]),
            ("abbreviated-model-control-mode", ["--model-control=poll"]),
            ("abbreviated-load-model", ["--load=resnet50"]),
        ]
    ],
    # ---- model repository ----
    *[
        case(
            f"uri-{slug}",
            "spec.modelRepository.uri",
            "s3://bucket/path",
            "pvc://<claim>",
            changes=(("spec.modelRepository.uri", uri),),
        )
        for slug, uri in [
            ("http", "http://models.example.com/repo"),
            ("s3-without-bucket", "s3://"),
            ("s3-empty-bucket", "s3:///path"),
            ("gs-without-bucket", "gs://"),
            ("as-without-container", "as://account"),
            ("pvc-uppercase-claim", "pvc://UPPER/models"),
            ("relative-path", "models/vision"),
            ("empty", ""),
        ]
    ],
    case(
        "model-repository-missing",
        "spec.modelRepository",
        "Required value",
        changes=(("spec.modelRepository", _DELETE),),
    ),
    case("uri-missing", "spec.modelRepository.uri", "Required value", changes=(("spec.modelRepository.uri", _DELETE),)),
    case(
        "secret-ref-empty-name",
        "spec.modelRepository.secretRef.name",
        "at least 1 chars long",
        changes=(("spec.modelRepository.secretRef.name", ""),),
    ),
    # ---- unknown fields (strict field validation) ----
    case("unknown-field-replica-typo", "spec.replica", "unknown field", changes=(("spec.replica", 3),)),
    case("unknown-field-in-gpu", "spec.gpu.cout", "unknown field", changes=(("spec.gpu.cout", 2),)),
    case(
        "unknown-field-in-autoscaling",
        "spec.autoscaling.targetLatency",
        "unknown field",
        changes=(("spec.autoscaling.targetLatency", 50),),
    ),
    # ---- GPUs ----
    case(
        "product-with-zero-gpus",
        "spec.gpu.product",
        "spec.gpu.count of at least 1",
        "remove spec.gpu.product",
        changes=(("spec.gpu.count", 0),),
    ),
    case(
        "resource-name-amd",
        "spec.gpu.resourceName",
        "must be nvidia.com/gpu",
        "nvidia.com/mig-1g.10gb",
        changes=(("spec.gpu.resourceName", "amd.com/gpu"),),
    ),
    case(
        "node-selector-contradicts-product",
        "spec.nodeSelector",
        "conflicts with spec.gpu.product",
        "spec.gpu.product only",
        changes=(("spec.nodeSelector", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),),
    ),
    case(
        "gpu-through-resource-limits",
        "spec.triton.resources.limits",
        "must not request GPUs",
        "spec.gpu.count",
        changes=(("spec.triton.resources.limits", {"nvidia.com/gpu": 1}),),
    ),
    case(
        "mig-through-resource-limits",
        "spec.triton.resources.limits",
        "must not request GPUs",
        "spec.gpu.resourceName",
        changes=(("spec.triton.resources.limits", {"nvidia.com/mig-1g.10gb": 1}),),
    ),
    # ---- quantities and disruption budget ----
    case(
        "quantity-lots",
        "spec.triton.resources.requests[cpu]",
        "Kubernetes quantity",
        "500m",
        changes=(("spec.triton.resources.requests", {"cpu": "lots"}),),
    ),
    case(
        "quantity-with-space",
        "spec.triton.resources.limits[memory]",
        "Kubernetes quantity",
        "4Gi",
        changes=(("spec.triton.resources.limits", {"memory": "32 GB"}),),
    ),
    case(
        "budget-both-limits",
        "spec.disruptionBudget",
        "either maxUnavailable or minAvailable",
        changes=(("spec.disruptionBudget", {"maxUnavailable": 1, "minAvailable": 1}),),
    ),
    case(
        "budget-not-a-count-or-percentage",
        "spec.disruptionBudget.maxUnavailable",
        "25%",
        changes=(("spec.disruptionBudget", {"maxUnavailable": "one"}),),
    ),
    case(
        "budget-negative",
        "spec.disruptionBudget.minAvailable",
        "25%",
        changes=(("spec.disruptionBudget", {"minAvailable": -1}),),
    ),
    case(
        "budget-over-100-percent",
        "spec.disruptionBudget.maxUnavailable",
        "0% to 100%",
        changes=(("spec.disruptionBudget", {"maxUnavailable": "150%"}),),
    ),
    # ---- models ----
    case(
        "duplicate-model-names",
        "spec.models[1]",
        "Duplicate value",
        changes=(("spec.models", [{"name": "resnet50"}, {"name": "resnet50"}]),),
    ),
    case(
        "model-name-with-slash",
        "spec.models[0].name",
        "directory at the top of the model repository",
        "no '/'",
        changes=(("spec.models.0.name", "vision/resnet50"),),
    ),
    case("model-name-missing", "spec.models[0].name", "Required value", changes=(("spec.models.0.name", _DELETE),)),
    case(
        "env-without-name",
        "spec.triton.env[0].name",
        "Required value",
        changes=(("spec.triton.env", [{"value": "1"}]),),
    ),
    # ---- metadata ----
    case(
        "name-uppercase",
        "metadata.name",
        "lowercase",
        changes=(("metadata.name", "ResNet"),),
    ),
    case(
        "name-starts-with-digit",
        "metadata.name",
        "starting with a letter",
        changes=(("metadata.name", "50-resnet"),),
    ),
    case(
        "name-longer-than-a-dns-label",
        "metadata.name",
        "at most 63 characters",
        changes=(("metadata.name", "r" * 64),),
    ),
    # ---- spec itself ----
    case("spec-missing", "spec", "Required value", changes=(("spec", _DELETE),)),
]


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
