"""``triton-operator render``: the children the operator would apply, computed offline from manifests.

For GitOps pull-request review: the output is produced by the same builders the operator runs, so a reviewer
sees the exact Deployment, Service and disruption budget a change leads to.
"""

from __future__ import annotations

import sys
from typing import Any

from triton_operator.api.v1alpha1 import API_VERSION, KIND, InferenceService
from triton_operator.resources.children import desired_children
from triton_operator.yamlio import dump_all_yaml, load_all_yaml

UID_PLACEHOLDER = "<uid assigned by the API server>"


def parse_inference_service(document: dict[str, Any]) -> InferenceService:
    """Validate one manifest the way the operator reads it, filling in what the API server would."""
    metadata = {"namespace": "default", "uid": UID_PLACEHOLDER, "generation": 1, **(document.get("metadata") or {})}
    return InferenceService.model_validate({**document, "metadata": metadata})


def render_manifests(text: str) -> str:
    """Every child of every InferenceService in a YAML stream, as one YAML stream."""
    rendered: list[dict[str, Any]] = []
    for index, document in enumerate(load_all_yaml(text)):
        if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
            print(
                f"# skipped document {index}: {document.get('kind')} is not a {API_VERSION} {KIND}", file=sys.stderr
            )
            continue
        rendered.extend(desired_children(parse_inference_service(document)).present())
    if not rendered:
        raise ValueError(f"no {API_VERSION} {KIND} found")
    return dump_all_yaml(rendered)
