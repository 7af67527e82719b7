"""The operator image's runtime config, read from operator/Dockerfile by hack/dockerfile_config.py (which the local,
Docker-free build also uses), agrees with what the chart runs; and the parser refuses what it cannot honour, so the
two builds cannot drift apart silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scripts import hack_module

REPO = Path(__file__).resolve().parents[2]
dockerfile_config = hack_module("dockerfile_config")


def image_config() -> dict[str, Any]:
    return dict(dockerfile_config.final_stage_config((REPO / "operator" / "Dockerfile").read_text()))


def chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "charts" / "triton-operator" / "values.yaml").read_text()))


def chart_container() -> str:
    return (REPO / "charts" / "triton-operator" / "templates" / "deployment.yaml").read_text()


def test_the_image_runs_the_operator_as_the_chart_expects() -> None:
    config, values = image_config(), chart_values()
    assert config["Entrypoint"] == ["triton-operator"]
    assert "command: [triton-operator]" in chart_container()  # the chart's command is the image's entrypoint
    assert config["Cmd"] == ["run"]
    assert config["User"] == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert set(config["ExposedPorts"]) == {f"{values['metrics']['port']}/tcp", f"{values['healthPort']}/tcp"}
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]  # the chart's root filesystem is read-only


@pytest.mark.parametrize(
    ("final_stage", "message"),
    [
        ('HEALTHCHECK CMD ["true"]', "HEALTHCHECK in the final stage is not supported"),
        ("ENV PATH=$PATH:/x", "variable expansion is not supported"),
        ("CMD run --verbose", "must be the JSON exec form"),
        ("LABEL novalue", "expects KEY=VALUE"),
    ],
    ids=["healthcheck", "env-expansion", "shell-form-cmd", "label-without-value"],
)
def test_the_parser_refuses_what_the_local_build_cannot_reproduce(final_stage: str, message: str) -> None:
    with pytest.raises(dockerfile_config.DockerfileError, match=message):
        dockerfile_config.final_stage_config(f"FROM python:3.11-slim\nUSER 65532:65532\n{final_stage}\n")
