"""`triton-operator render` refuses every manifest of the admission catalogue, naming the field, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.catalogue import INVALID, Case, valid_manifest
from triton_operator.render import InvalidManifest, parse_inference_service, render_manifests

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("bad", INVALID)
def test_render_refuses_what_admission_refuses(bad: Case) -> None:
    with pytest.raises(InvalidManifest) as raised:
        parse_inference_service(bad.manifest)
    message = str(raised.value)
    # Offline, a duplicate in a list is reported on the list rather than on its second entry.
    assert re.sub(r"\[\d+\]$", "", bad.field_path.removeprefix("spec.")) in message, message


def test_the_catalogue_base_and_the_examples_are_valid_offline() -> None:
    parse_inference_service(valid_manifest())
    for example in EXAMPLES:
        assert render_manifests(example.read_text())


def test_every_problem_is_listed_at_once() -> None:
    manifest = valid_manifest()
    manifest["spec"]["gpu"]["count"] = "1"
    manifest["spec"]["autoscaling"]["minReplicas"] = 9
    manifest["spec"]["modelRepository"]["uri"] = "http://x"
    with pytest.raises(InvalidManifest) as raised:
        parse_inference_service(manifest)
    problems = "\n".join(raised.value.problems)
    assert "spec.gpu.count: Input should be a valid integer" in problems
    assert "spec.autoscaling.minReplicas: spec.autoscaling.minReplicas must be less than or equal to" in problems
    assert "spec.modelRepository.uri: spec.modelRepository.uri must be s3://bucket/path" in problems
