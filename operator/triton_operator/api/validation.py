"""The CRD's CEL rules, evaluated offline, so `triton-operator render` refuses what the API server would.

The rules live once, in the pydantic models (``x-kubernetes-validations``); the API server evaluates them at
admission and this module evaluates the very same generated schema with cel-python, reporting each violation
with the field path and message the API server would print.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from triton_operator.api.crd import openapi_schema

Schema = dict[str, Any]


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    environment = _environment()
    return environment.program(environment.compile(rule))


def _children(schema: Schema, value: Any, path: str) -> Iterator[tuple[Schema, Any, str]]:
    """The sub-schemas that apply to the parts of ``value`` that are present."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, child in value.items():
            if name in properties:
                yield properties[name], child, f"{path}.{name}" if path else name
            elif isinstance(schema.get("additionalProperties"), dict):
                yield schema["additionalProperties"], child, f"{path}[{name}]"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield schema["items"], item, f"{path}[{index}]"


def cel_violations(document: dict[str, Any], schema: Schema | None = None, path: str = "") -> list[str]:
    """Every CEL rule of the InferenceService schema that ``document`` breaks, as ``field: message`` lines."""
    schema = openapi_schema() if schema is None else schema
    problems: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        where = path + rule.get("fieldPath", "") if path or not rule.get("fieldPath") else rule["fieldPath"].lstrip(".")
        # A rule that cannot be evaluated met a value of the wrong type or a missing required field: the API
        # server checks those before it runs rules, and so does the caller (pydantic), which reports them better.
        try:
            result = _program(rule["rule"]).evaluate({"self": json_to_cel(document)})
        except CELEvalError:
            continue
        if isinstance(result, CELEvalError):
            continue
        if not result:
            problems.append(f"{where or '<root>'}: {rule['message']}")
    for child_schema, child, child_path in _children(schema, document, path):
        problems.extend(cel_violations(child, child_schema, child_path))
    return problems
