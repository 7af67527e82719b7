"""``triton-operator render``: the children the operator would apply, computed offline from manifests.

For GitOps pull-request review: the output is produced by the same builders the operator runs, so a reviewer
sees the exact Deployment, Service and disruption budget a change leads to.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import ValidationError

from triton_operator.api.v1alpha1 import API_VERSION, KIND, InferenceService
from triton_operator.api.validation import cel_violations
from triton_operator.resources.children import desired_children
from triton_operator.resources.meta import DEFAULTS, OperatorDefaults
from triton_operator.yamlio import dump_all_yaml, load_all_yaml

UID_PLACEHOLDER = "<uid assigned by the API server>"


class InvalidManifest(ValueError):
    """A manifest the API server would refuse; the message lists every problem as ``field: what is wrong``."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"InferenceService {name!r} is invalid:\n" + "\n".join(f"  {p}" for p in problems))


def _field_path(location: tuple[int | str, ...]) -> str:
    """pydantic's ('spec', 'models', 0, 'name') as Kubernetes spells it: spec.models[0].name."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _pydantic_problems(error: ValidationError) -> list[str]:
    return [
        f"{_field_path(problem['loc'])}: {problem['msg']}"
        + (f" (got {problem['input']!r})" if problem["type"] != "missing" else "")
        for problem in error.errors()
    ]


def parse_inference_service(document: dict[str, Any]) -> InferenceService:
    """Validate one manifest as admission would (types, ranges, enums and the CRD's CEL rules), then read it
    the way the operator does, filling in what the API server would."""
    metadata = {"namespace": "default", "uid": UID_PLACEHOLDER, "generation": 1, **(document.get("metadata") or {})}
    problems = cel_violations(document)
    try:
        # JSON mode with strict types: "1" is not an integer, as it is not for the API server.
        isvc = InferenceService.model_validate_json(json.dumps({**document, "metadata": metadata}), strict=True)
    except ValidationError as error:
        problems += _pydantic_problems(error)
    if problems:
        raise InvalidManifest(str(metadata.get("name")), problems)
    return isvc


def render_manifests(text: str, defaults: OperatorDefaults = DEFAULTS) -> str:
    """Every child of every InferenceService in a YAML stream, as one YAML stream."""
    rendered: list[dict[str, Any]] = []
    for index, document in enumerate(load_all_yaml(text)):
        if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
            print(
                f"# skipped document {index}: {document.get('kind')} is not a {API_VERSION} {KIND}", file=sys.stderr
            )
            continue
        rendered.extend(desired_children(parse_inference_service(document), defaults).present())
    if not rendered:
        raise ValueError(f"no {API_VERSION} {KIND} found")
    return dump_all_yaml(rendered)
