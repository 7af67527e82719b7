"""The catalogue of invalid InferenceService manifests, shared by the admission test (the real API server must
reject each) and the offline validation test (``triton-operator render`` must refuse each too).

Each case starts from a valid manifest, breaks one thing, and says what the rejection must contain: the
offending field's path and a hint of the fix.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

ISVC = ("serving.triton-operator.dev/v1alpha1", "InferenceService")  # (apiVersion, kind)


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
        "preferred-batch-size-above-max",
        "spec.models[0].config.dynamicBatching.preferredBatchSizes",
        "must not exceed spec.models[].config.maxBatchSize",
        changes=(("spec.models.0.config.maxBatchSize", 4),),
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
