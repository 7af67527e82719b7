"""Builders, table by table: spec in, manifest out."""

from __future__ import annotations

from typing import Any

import pytest

from triton_operator.render import parse_inference_service
from triton_operator.resources.children import DEPLOYMENT, HPA, PDB, SERVICE, desired_children
from triton_operator.resources.deployment import build_deployment
from triton_operator.resources.meta import OperatorDefaults


def isvc(**spec: Any) -> Any:
    return parse_inference_service(
        {
            "apiVersion": "serving.triton-operator.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"},
            "spec": {"modelRepository": {"uri": "s3://bucket/models"}, **spec},
        }
    )


def pod_spec(**spec: Any) -> dict[str, Any]:
    return build_deployment(isvc(**spec))["spec"]["template"]["spec"]


def container(**spec: Any) -> dict[str, Any]:
    return pod_spec(**spec)["containers"][0]


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("gpu", "limits", "selector", "tolerations"),
    [
        ({}, {"nvidia.com/gpu": 1}, None, [GPU_TOLERATION]),
        ({"count": 4}, {"nvidia.com/gpu": 4}, None, [GPU_TOLERATION]),
        (
            {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"},
            {"nvidia.com/gpu": 2},
            {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            [GPU_TOLERATION],
        ),
        ({"count": 1, "resourceName": "nvidia.com/mig-1g.10gb"}, {"nvidia.com/mig-1g.10gb": 1}, None, [GPU_TOLERATION]),
        ({"count": 0}, None, None, None),
    ],
    ids=["default-one-gpu", "four-gpus", "product", "mig", "cpu-only"],
)
def test_gpu_placement(gpu: dict[str, Any], limits: Any, selector: Any, tolerations: Any) -> None:
    spec = pod_spec(gpu=gpu)
    assert container(gpu=gpu).get("resources", {}).get("limits") == limits
    assert spec.get("nodeSelector") == selector
    assert spec.get("tolerations") == tolerations


def test_user_scheduling_fields_are_merged_not_replaced() -> None:
    user_toleration = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    spec = pod_spec(
        gpu={"count": 1, "product": "NVIDIA-H100-80GB-HBM3"},
        nodeSelector={"pool": "inference"},
        tolerations=[user_toleration],
        affinity=affinity,
        priorityClassName="high",
        serviceAccountName="triton",
    )
    assert spec["nodeSelector"] == {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [user_toleration, GPU_TOLERATION]
    assert spec["affinity"] == affinity
    assert spec["priorityClassName"] == "high"
    assert spec["serviceAccountName"] == "triton"


def test_a_user_toleration_for_the_gpu_taint_is_not_duplicated() -> None:
    assert pod_spec(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists"}
    ]


def test_user_resources_keep_their_values_beside_the_gpu() -> None:
    resources = container(triton={"resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}}})["resources"]
    assert resources == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi", "nvidia.com/gpu": 1}}


@pytest.mark.parametrize(
    ("uri", "secret", "repository_flag", "volumes", "mounts", "env", "env_from"),
    [
        ("s3://bucket/models", None, "s3://bucket/models", [], [], None, None),
        ("s3://bucket/models", "aws", "s3://bucket/models", [], [], None, [{"secretRef": {"name": "aws"}}]),
        ("as://acct/container/m", "azure", "as://acct/container/m", [], [], None, [{"secretRef": {"name": "azure"}}]),
        (
            "gs://bucket/m",
            "gcs",
            "gs://bucket/m",
            [{"name": "model-repository-credentials", "secret": {"secretName": "gcs"}}],
            [{"name": "model-repository-credentials", "mountPath": "/var/run/secrets/triton-operator/model-repository", "readOnly": True}],
            [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/secrets/triton-operator/model-repository/gcloud-application-credentials.json"}],
            [{"secretRef": {"name": "gcs"}}],
        ),
        (
            "pvc://store/triton/models",
            None,
            "/mnt/models",
            [{"name": "model-repository", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}}],
            [{"name": "model-repository", "mountPath": "/mnt/models", "readOnly": True, "subPath": "triton/models"}],
            None,
            None,
        ),
        (
            "pvc://store",
            None,
            "/mnt/models",
            [{"name": "model-repository", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}}],
            [{"name": "model-repository", "mountPath": "/mnt/models", "readOnly": True}],
            None,
            None,
        ),
        ("/opt/models", None, "/opt/models", [], [], None, None),
    ],
    ids=["s3", "s3-secret", "azure", "gcs-secret", "pvc-subpath", "pvc-root", "path-in-image"],
)
def test_model_repository(
    uri: str, secret: str | None, repository_flag: str, volumes: Any, mounts: Any, env: Any, env_from: Any
) -> None:
    repo: dict[str, Any] = {"uri": uri, **({"secretRef": {"name": secret}} if secret else {})}
    spec = pod_spec(modelRepository=repo)
    triton = spec["containers"][0]
    assert f"--model-repository={repository_flag}" in triton["args"]
    assert spec["volumes"][:-1] == volumes  # the last volume is always /dev/shm
    assert triton["volumeMounts"][:-1] == mounts
    assert triton.get("env") == env
    assert triton.get("envFrom") == env_from


@pytest.mark.parametrize(
    ("spec", "expected_tail"),
    [
        ({}, []),
        ({"models": [{"name": "a"}, {"name": "b"}]}, ["--model-control-mode=explicit", "--strict-readiness=false"]),
        ({"triton": {"args": ["--log-verbose=1"]}}, ["--log-verbose=1"]),
        (
            {"models": [], "triton": {"args": ["--exit-on-error=false"]}},
            ["--model-control-mode=explicit", "--strict-readiness=false", "--exit-on-error=false"],
        ),
    ],
    ids=["poll-none", "explicit", "user-args", "explicit-empty-and-args"],
)
def test_triton_command_line(spec: dict[str, Any], expected_tail: list[str]) -> None:
    args = container(**spec)["args"]
    assert args[:5] == [
        "tritonserver",
        "--model-repository=s3://bucket/models",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
    ]
    assert args[5:] == expected_tail


def test_explicit_model_control_gates_readiness_on_the_operator_and_keeps_the_template_when_models_change() -> None:
    """The models are loaded through Triton's API, so the pod template must not mention them: a changed list would
    otherwise roll every pod."""
    one = pod_spec(models=[{"name": "a"}])
    two = pod_spec(models=[{"name": "a"}, {"name": "b", "config": {"maxBatchSize": 4}}])
    assert one == two
    assert one["readinessGates"] == [{"conditionType": "serving.triton-operator.dev/models-loaded"}]
    assert "readinessGates" not in pod_spec()


def test_probes_use_triton_health_endpoints_and_startup_budget() -> None:
    triton = container(triton={"startupTimeoutSeconds": 1800})
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 1800


@pytest.mark.parametrize(
    ("spec", "replicas_in_deployment", "pdb"),
    [
        ({}, 1, None),
        ({"replicas": 3}, 3, {"maxUnavailable": 1}),
        ({"replicas": 3, "disruptionBudget": {"minAvailable": "50%"}}, 3, {"minAvailable": "50%"}),
        ({"replicas": 3, "disruptionBudget": {"enabled": False}}, 3, None),
        ({"autoscaling": {"maxReplicas": 4}}, None, {"maxUnavailable": 1}),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 1}}, None, None),
        ({"replicas": 0}, 0, None),
    ],
    ids=["single", "three", "min-available", "disabled", "autoscaled", "autoscaled-to-one", "zero"],
)
def test_replicas_and_disruption_budget(spec: dict[str, Any], replicas_in_deployment: int | None, pdb: Any) -> None:
    children = desired_children(isvc(**spec))
    deployment = children.manifests[DEPLOYMENT]
    assert deployment is not None
    assert deployment["spec"].get("replicas") == replicas_in_deployment
    budget = children.manifests[PDB]
    if pdb is None:
        assert budget is None
        assert PDB in children.absent()
    else:
        assert budget is not None
        assert {k: v for k, v in budget["spec"].items() if k != "selector"} == pdb
        assert budget["spec"]["selector"] == {"matchLabels": {"serving.triton-operator.dev/inferenceservice": "m"}}


def test_children_share_identity_and_owner() -> None:
    children = desired_children(isvc(replicas=2)).present()
    assert [c["kind"] for c in children] == ["Deployment", "Service", "PodDisruptionBudget"]
    for child in children:
        meta = child["metadata"]
        assert (meta["name"], meta["namespace"]) == ("m", "ns")
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "triton-operator"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "serving.triton-operator.dev/v1alpha1",
                "kind": "InferenceService",
                "name": "m",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_service_ports() -> None:
    service = desired_children(isvc()).manifests[SERVICE]
    assert service is not None
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 8000), ("grpc", 8001), ("metrics", 8002)]
    assert service["spec"]["selector"] == {"serving.triton-operator.dev/inferenceservice": "m"}


def test_the_operator_default_image_applies_unless_the_spec_names_one() -> None:
    mirror = OperatorDefaults(triton_image="registry.internal/triton:25.10")
    assert build_deployment(isvc(), mirror)["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.internal/triton:25.10"
    own = build_deployment(isvc(triton={"image": "example.com/triton:1"}), mirror)
    assert own["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/triton:1"
    assert container()["image"] == "nvcr.io/nvidia/tritonserver:25.10-py3"
    assert container()["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_hpa_engine_gets_an_hpa_on_the_queue_latency_pods_metric() -> None:
    autoscaling = {
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetQueueLatencyMilliseconds": 80,
        "engine": "HPA",
        "scaleDown": {"stabilizationWindowSeconds": 120},
    }
    hpa = desired_children(isvc(autoscaling=autoscaling)).manifests[HPA]
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "m"},
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "triton_queue_latency_milliseconds"},
                    "target": {"type": "AverageValue", "averageValue": "80"},
                },
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}},
    }
    assert "replicas" not in desired_children(isvc(autoscaling=autoscaling)).manifests[DEPLOYMENT]["spec"]


@pytest.mark.parametrize("spec", [{}, {"autoscaling": {"maxReplicas": 3}}, {"autoscaling": {"maxReplicas": 3, "engine": "Operator"}}])
def test_no_hpa_without_the_hpa_engine(spec: dict[str, Any]) -> None:
    assert desired_children(isvc(**spec)).manifests[HPA] is None
