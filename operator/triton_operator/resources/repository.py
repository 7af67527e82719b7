"""How a model repository URI reaches Triton: cloud URIs as they are, PVCs mounted, credentials as env.

Triton reads s3://, gs:// and as:// itself, so the operator does not copy models around (no storage
initializer): it only hands Triton the URI and the credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triton_operator.api.v1alpha1 import InferenceService

PVC_MOUNT_PATH = "/mnt/models"
GCS_CREDENTIALS_DIR = "/var/run/secrets/triton-operator/model-repository"
GCS_CREDENTIALS_KEY = "gcloud-application-credentials.json"
PVC_VOLUME = "model-repository"
GCS_VOLUME = "model-repository-credentials"


@dataclass(frozen=True)
class RepositoryMount:
    """What the pod needs so Triton can read the repository."""

    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)


def parse_pvc_uri(uri: str) -> tuple[str, str]:
    """``pvc://claim/sub/path`` -> (``claim``, ``sub/path``); the subpath may be empty."""
    claim, _, subpath = uri.removeprefix("pvc://").partition("/")
    return claim, subpath.strip("/")


def repository_mount(isvc: InferenceService) -> RepositoryMount:
    """Volumes, mounts and env for the repository named in spec.modelRepository."""
    repo = isvc.spec.model_repository
    uri = repo.uri
    env_from = [{"secretRef": {"name": repo.secret_ref.name}}] if repo.secret_ref else []

    if uri.startswith("pvc://"):
        claim, subpath = parse_pvc_uri(uri)
        mount: dict[str, Any] = {"name": PVC_VOLUME, "mountPath": PVC_MOUNT_PATH, "readOnly": True}
        if subpath:
            mount["subPath"] = subpath
        return RepositoryMount(
            path=PVC_MOUNT_PATH,
            volumes=[{"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            volume_mounts=[mount],
            env_from=env_from,
        )

    if uri.startswith("gs://") and repo.secret_ref:
        return RepositoryMount(
            path=uri,
            volumes=[{"name": GCS_VOLUME, "secret": {"secretName": repo.secret_ref.name}}],
            volume_mounts=[{"name": GCS_VOLUME, "mountPath": GCS_CREDENTIALS_DIR, "readOnly": True}],
            env=[{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_CREDENTIALS_DIR}/{GCS_CREDENTIALS_KEY}"}],
            env_from=env_from,
        )

    return RepositoryMount(path=uri, env_from=env_from)
