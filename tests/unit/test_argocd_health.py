"""The Argo CD health check (deploy/argocd/health.lua), run by a real Lua interpreter on statuses that the
operator's own status reducer produces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime

from triton_operator.policy.models import ModelEntry, ReplicaModels, reduce_models
from triton_operator.policy.observations import DeploymentObservation, PodObservation
from triton_operator.policy.status import Observed, reduce_status
from triton_operator.render import parse_inference_service

HEALTH_LUA = Path(__file__).resolve().parents[2] / "deploy" / "argocd" / "health.lua"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the check the way Argo CD does: the object as global `obj`, the script's return value read back."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def service_with(
    observed: Observed | None, generation: int = 1, observed_generation: int | None = None
) -> dict[str, Any]:
    manifest = {
        "apiVersion": "serving.triton-operator.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": {"modelRepository": {"uri": "s3://b/m"}, "gpu": {"product": "NVIDIA-B200"}},
    }
    if observed is None:
        return manifest
    status = reduce_status(parse_inference_service(manifest), observed, {}, "2026-01-01T00:00:00Z")
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    return {**manifest, "status": status}


def deployment(ready: int) -> DeploymentObservation:
    return DeploymentObservation(
        generation=1, observed_generation=1, spec_replicas=1, replicas=1, ready_replicas=ready, updated_replicas=1
    )


def with_models(*entries: ModelEntry) -> Observed:
    """A ready pod whose Triton reports ``entries`` for the wanted models a and b (the real reducer decides)."""
    models = reduce_models(["a", "b"], [ReplicaModels("p", reachable=True, entries=entries)])
    return Observed(deployment=deployment(1), pods=[PodObservation("p", True, True)], models=models)


MODEL_LOADING = with_models(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "LOADING"))
MODEL_FAILED = with_models(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "UNAVAILABLE", "Internal: boom"))
MODELS_READY = with_models(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "READY"))


@pytest.mark.parametrize(
    ("obj", "health", "message_part"),
    [
        (service_with(None), "Progressing", "Waiting for the operator"),
        (service_with(Observed(deployment=deployment(1))), "Healthy", "Ready: 1 of 1 replicas ready"),
        (service_with(Observed(deployment=deployment(0))), "Progressing", "Loading"),
        (
            service_with(
                Observed(
                    deployment=deployment(0), pods=[PodObservation("p", False, False, unschedulable_message="0/8")]
                )
            ),
            "Progressing",
            "no node offers nvidia.com/gpu.product=NVIDIA-B200",
        ),
        (
            service_with(
                Observed(
                    deployment=deployment(0), pods=[PodObservation("p", True, False, waiting_reason="ImagePullBackOff")]
                )
            ),
            "Degraded",
            "Failed: pod p: ImagePullBackOff",
        ),
        (service_with(Observed(apply_error="quota exceeded")), "Degraded", "quota exceeded"),
        (
            service_with(Observed(deployment=deployment(1)), generation=2, observed_generation=1),
            "Progressing",
            "generation 2",
        ),
        (service_with(MODELS_READY), "Healthy", "2 models ready on p"),
        (service_with(MODEL_LOADING), "Progressing", "model b: loading on p"),
        (service_with(MODEL_FAILED), "Degraded", "model b loads on no replica: failed to load on p: Internal: boom"),
    ],
    ids=[
        "no-status",
        "ready",
        "loading",
        "unschedulable",
        "image-pull",
        "apply-failed",
        "stale-generation",
        "models-ready",
        "model-loading",
        "model-failed",
    ],
)
def test_argocd_health(obj: dict[str, Any], health: str, message_part: str) -> None:
    status, message = argocd_health(obj)
    assert status == health
    assert message_part in message


FLUX_EXPRS = Path(__file__).resolve().parents[2] / "deploy" / "flux" / "health-check-exprs.yaml"


def flux_health(obj: dict[str, Any]) -> str:
    """Evaluate the Flux healthCheckExprs with a CEL interpreter, in Flux's order: inProgress, failed, current."""
    import celpy
    import yaml
    from celpy.adapter import json_to_cel

    rules = yaml.safe_load(FLUX_EXPRS.read_text())["healthCheckExprs"][0]
    environment = celpy.Environment()
    activation = {key: json_to_cel(value) for key, value in obj.items()}
    for verdict in ("inProgress", "failed", "current"):
        if environment.program(environment.compile(rules[verdict])).evaluate(activation):
            return verdict
    return "inProgress"


@pytest.mark.parametrize(
    ("obj", "health"),
    [
        (service_with(Observed(deployment=deployment(1))), "current"),
        (service_with(Observed(deployment=deployment(0))), "inProgress"),
        (service_with(Observed(apply_error="quota exceeded")), "failed"),
        (service_with(Observed(deployment=deployment(1)), generation=2, observed_generation=1), "inProgress"),
        (service_with(MODELS_READY), "current"),
        (service_with(MODEL_LOADING), "inProgress"),
        (service_with(MODEL_FAILED), "failed"),
    ],
    ids=["ready", "loading", "apply-failed", "stale-generation", "models-ready", "model-loading", "model-failed"],
)
def test_flux_health_check_exprs(obj: dict[str, Any], health: str) -> None:
    assert flux_health(obj) == health
