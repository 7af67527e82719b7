"""The Deployment of Triton pods: the command line, probes, resources, placement and repository mounts."""

from __future__ import annotations

import math
from typing import Any

from triton_operator.api.v1alpha1 import InferenceService
from triton_operator.policy.readiness_gate import GATE
from triton_operator.resources.meta import (
    DEFAULTS,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    Manifest,
    OperatorDefaults,
    labels,
    object_meta,
    selector_labels,
)
from triton_operator.resources.placement import gpu_limits, scheduling_fields
from triton_operator.resources.repository import RepositoryMount, repository_mount

CONTAINER_NAME = "triton"
SHM_VOLUME = "dshm"
STARTUP_PROBE_PERIOD_SECONDS = 2  # a cheap local HTTP GET; a coarse period would add seconds to every start


def triton_args(isvc: InferenceService, repository_path: str) -> list[str]:
    """``tritonserver`` and its flags: the ones the operator owns first, then the user's extra flags.

    The same command line runs in NVIDIA's image (whose entrypoint executes its arguments) and in the
    project's local CPU image.
    """
    args = [
        "tritonserver",
        f"--model-repository={repository_path}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
    ]
    if isvc.spec.models is not None:
        # No --load-model flags: the operator loads spec.models through Triton's API (policy.readiness_gate), so
        # the pod template, and with it the pods, stay the same when the list changes. Readiness then means
        # "the server answers"; the models' readiness is the operator's gate.
        args.extend(["--model-control-mode=explicit", "--strict-readiness=false"])
    args.extend(isvc.spec.triton.args or [])
    return args


def _http_probe(path: str, period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
    }


def probes(isvc: InferenceService) -> dict[str, Any]:
    """Triton's own health endpoints. The startup probe's budget covers slow GPU model loads, so liveness
    can stay strict without killing a pod that is still loading."""
    startup_failures = math.ceil(isvc.spec.triton.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS)
    return {
        "startupProbe": _http_probe("/v2/health/ready", STARTUP_PROBE_PERIOD_SECONDS, startup_failures),
        "livenessProbe": _http_probe("/v2/health/live", 10, 3),
        "readinessProbe": _http_probe("/v2/health/ready", 5, 3),
    }


def container_resources(isvc: InferenceService) -> dict[str, Any]:
    """The user's requests and limits, with the GPU limit from spec.gpu."""
    user = isvc.spec.triton.resources
    requests = dict(user.requests or {}) if user else {}
    limits = {**(user.limits or {} if user else {}), **gpu_limits(isvc)}
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def triton_container(isvc: InferenceService, mount: RepositoryMount, defaults: OperatorDefaults) -> dict[str, Any]:
    """The one container of the pod. Its termination message falls back to the log's tail, so a Triton that
    exits because a model failed to load leaves Triton's own words in the pod status (and so in ours)."""
    triton = isvc.spec.triton
    env = [e.model_dump(by_alias=True, exclude_none=True) for e in triton.env or []] + mount.env
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": triton.image or defaults.triton_image,
        "args": triton_args(isvc, mount.path),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        **probes(isvc),
        "volumeMounts": [*mount.volume_mounts, {"name": SHM_VOLUME, "mountPath": "/dev/shm"}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if triton.image_pull_policy:
        container["imagePullPolicy"] = triton.image_pull_policy.value
    if env:
        container["env"] = env
    if mount.env_from:
        container["envFrom"] = mount.env_from
    resources = container_resources(isvc)
    if resources:
        container["resources"] = resources
    return container


def pod_template(isvc: InferenceService, defaults: OperatorDefaults) -> dict[str, Any]:
    """The pod: Triton, its volumes (the repository and a memory-backed /dev/shm for the python backend's
    shared-memory tensors, which outgrow the runtime's 64 MiB default) and the placement fields."""
    mount = repository_mount(isvc)
    spec: dict[str, Any] = {
        "containers": [triton_container(isvc, mount, defaults)],
        "volumes": [*mount.volumes, {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}],
        "enableServiceLinks": False,
        **scheduling_fields(isvc),
    }
    if isvc.spec.models is not None:
        spec["readinessGates"] = [{"conditionType": GATE}]
    pull_secrets = isvc.spec.triton.image_pull_secrets
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": secret.name} for secret in pull_secrets]
    return {"metadata": {"labels": labels(isvc)}, "spec": spec}


def build_deployment(isvc: InferenceService, defaults: OperatorDefaults = DEFAULTS) -> Manifest:
    """The Deployment. spec.replicas is left out when an autoscaler owns it, so that server-side apply
    never takes the replica count back from the autoscaler."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(isvc)},
        "template": pod_template(isvc, defaults),
        "progressDeadlineSeconds": isvc.spec.triton.startup_timeout_seconds + 120,
    }
    if not isvc.spec.autoscaled:
        spec = {"replicas": isvc.spec.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_meta(isvc), "spec": spec}
