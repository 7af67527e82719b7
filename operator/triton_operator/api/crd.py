"""Generates the InferenceService CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``, no ``anyOf`` of
alternative types, no ``additionalProperties: false`` beside ``properties``, and no ``default`` (a schema default
is persisted into the user's spec, which GitOps tools then report as drift). This module folds one into the other
and adds what only a CRD has: subresources, printer columns and root-level CEL rules.
"""

from __future__ import annotations

from typing import Any

from triton_operator.api.v1alpha1 import (
    DNS_LABEL_RE,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    InferenceServiceSpec,
    InferenceServiceStatus,
    cel,
)
from triton_operator.yamlio import dump_yaml

Schema = dict[str, Any]

# JSON Schema keywords that a structural schema keeps as they are.
_KEPT = {
    "description",
    "type",
    "enum",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
}


def _resolve(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline ``$ref`` and single-element ``allOf``, letting the referring schema's keys win."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**_resolve(target, defs), **rest}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return {**_resolve(schema["allOf"][0], defs), **rest}
    return schema


def _without_null(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """``X | None`` becomes ``X``: absence, not null, is how Kubernetes spells "unset"."""
    if "anyOf" not in schema:
        return schema
    options = [o for o in schema["anyOf"] if o.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(options) == 1:
        return {**_resolve(options[0], defs), **rest}
    return {**rest, "anyOf": options}


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Convert one pydantic JSON Schema node into a structural OpenAPI v3 schema node."""
    schema = _without_null(_resolve(schema, defs), defs)
    out: Schema = {k: v for k, v in schema.items() if k in _KEPT}
    extensions = {k: v for k, v in schema.items() if k.startswith("x-kubernetes-")}

    if extensions.get("x-kubernetes-int-or-string") or "anyOf" in schema:
        # int | str (quantities, percentages): Kubernetes' int-or-string, no type.
        out.pop("type", None)
        extensions["x-kubernetes-int-or-string"] = True
    elif schema.get("type") == "object" or "properties" in schema:
        out["type"] = "object"
        properties = schema.get("properties", {})
        if properties:
            out["properties"] = {name: structural(prop, defs) for name, prop in properties.items()}
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict) and additional:
            out["additionalProperties"] = structural(additional, defs)
        elif (additional is True or additional == {}) and not properties:
            extensions["x-kubernetes-preserve-unknown-fields"] = True
    elif schema.get("type") == "array":
        out["items"] = structural(schema.get("items", {}), defs)
        if "items" in extensions:  # a field that spelled its item schema out itself
            out["items"] = extensions.pop("items")
    if out.get("type") == "string" and "enum" in out:
        out["enum"] = list(out["enum"])
    return {**out, **extensions}


def _schema_of(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def openapi_schema() -> Schema:
    """The whole object's schema: spec and status from the models, plus name rules at the root."""
    return {
        "type": "object",
        "description": (
            "InferenceService serves models on NVIDIA Triton Inference Server: a Deployment of Triton pods on the "
            "requested GPUs, a Service, a PodDisruptionBudget and queue-latency autoscaling."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: serving.triton-operator.dev/v1alpha1."},
            "kind": {"type": "string", "description": "Kind of this object: InferenceService."},
            "metadata": {"type": "object"},  # the API server forbids anything more here
            "spec": {**_schema_of(InferenceServiceSpec), "description": "The desired Triton fleet."},
            "status": {**_schema_of(InferenceServiceStatus), "description": "What the operator observed; written only by it."},
        },
        "x-kubernetes-validations": [
            cel(
                f"self.metadata.name.matches('{DNS_LABEL_RE}') && size(self.metadata.name) <= 63",
                "metadata.name must be a DNS label (lowercase letters, digits and '-', starting with a letter, at most "
                "63 characters): it names the Service that serves the models",
            )
        ],
    }


PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready replicas"},
    {
        "name": "Models",
        "type": "string",
        "jsonPath": ".status.modelsReady",
        "description": "Models ready on every replica that answered, of those wanted (e.g. 2/3)",
    },
    {
        "name": "Queue latency",
        "type": "number",
        "jsonPath": ".status.autoscaler.queueLatencyMilliseconds",
        "description": "Request-weighted queue latency in milliseconds",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
    },
]


def custom_resource_definition() -> Schema:
    """The CRD manifest, as checked in under crds/ and shipped in the Helm chart."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "triton-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "triton"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_yaml() -> str:
    """The CRD as YAML, with a header saying where it comes from."""
    header = "# Generated by `triton-operator crds` from operator/triton_operator/api/v1alpha1.py. Do not edit.\n"
    return header + dump_yaml(custom_resource_definition())
