"""The chart's generated files match their source of truth (hack/chart_schema.py's values model), and the chart's
CRD copy and appVersion match the operator's."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.scripts import hack_module

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "triton-operator"
CRD = "inferenceservices.serving.triton-operator.dev.yaml"


chart_schema = hack_module("chart_schema")


def test_generated_files_match_the_values_model() -> None:
    stale = [str(p.relative_to(REPO)) for p in chart_schema.stale_files()]
    assert not stale, f"{stale} differ from hack/chart_schema.py's model: run `python hack/chart_schema.py`"


def test_values_yaml_round_trips_to_the_models_defaults() -> None:
    """The generated values.yaml is valid YAML whose values are exactly the model's defaults (the emitter is right),
    and they validate against the model."""
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert loaded == chart_schema.Values().model_dump(mode="json")
    chart_schema.Values.model_validate(loaded)


def _fields(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, info in model.model_fields.items():
        found.append((prefix + name, info))
        if isinstance(info.annotation, type) and issubclass(info.annotation, chart_schema.BaseModel):
            found += _fields(info.annotation, f"{prefix}{name}.")
    return found


def test_every_value_is_documented() -> None:
    undocumented = [path for path, info in _fields(chart_schema.Values) if len(info.description or "") < 10]
    assert not undocumented


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = chart_schema.json_schema()
    blocks = [schema, *schema["$defs"].values()]
    assert all(block.get("additionalProperties") is False for block in blocks), "a typo in a key must fail"
    assert schema["properties"]["replicaCount"]["minimum"] == 0


def test_chart_crd_copy_equals_the_generated_crd() -> None:
    assert (CHART / "files" / CRD).read_bytes() == (REPO / "crds" / CRD).read_bytes(), (
        "run `python hack/chart_schema.py` after `make crds`"
    )


def test_app_version_is_the_operators_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version
