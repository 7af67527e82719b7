"""Models across replicas, pure: status.models[] and phase from the replicas' indexes, config overrides merged
into Triton's complete config, and the loads/unloads that make a replica match spec.models.

The Triton texts below are the ones Triton 2.51 produced in tests/triton (the traceback after the first line is
what the Python backend appends).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from triton_operator.api.v1alpha1 import ModelConfigOverride, ModelSpec, Phase
from triton_operator.policy.models import (
    DEGRADED,
    MARKER_PARAMETER,
    UNKNOWN,
    Load,
    ModelEntry,
    ReplicaModels,
    Unload,
    configs_needed,
    merge_config,
    override_fields,
    override_in_effect,
    plan_actions,
    read_marker,
    reduce_models,
    repository_config,
    retry_delay,
    triton_message,
    wanted_models,
)

BROKEN_REASON = (
    "Internal: RuntimeError: broken model: initialize() raises on purpose (tests/models/bad/broken)\n\nAt:\n"
    "  /models/bad/broken/1/model.py(18): initialize\n"
)
BROKEN = "Internal: RuntimeError: broken model: initialize() raises on purpose (tests/models/bad/broken)"
NO_GPU = "Invalid argument: instance group identity_0 of model identity has kind KIND_GPU but no GPUs are available"
NO_GPU_LOAD = (
    "[400] load failed for model 'identity': version 1 is at UNAVAILABLE state: Invalid argument: instance group "
    "identity_0 of model identity has kind KIND_GPU but no GPUs are available;\n"
)
POLL = "[500] failed to load 'nope', failed to poll from model repository"
REFUSED = "cannot connect to Triton at 10.0.0.3:8000: Connect call failed ('10.0.0.3', 8000)"

# What Triton 2.51 reports for tests/models/good/identity (GET /v2/models/identity/config), trimmed of nothing.
IDENTITY: dict[str, Any] = {
    "name": "identity",
    "platform": "",
    "backend": "python",
    "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}},
    "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [-1]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1], "label_filename": ""}],
    "dynamic_batching": {
        "preferred_batch_size": [8],
        "max_queue_delay_microseconds": 100,
        "preserve_ordering": False,
        "priority_levels": 0,
        "default_priority_level": 0,
        "priority_queue_policy": {},
    },
    "instance_group": [
        {"name": "identity_0", "kind": "KIND_CPU", "count": 1, "gpus": [], "secondary_devices": [], "passive": False}
    ],
    "default_model_filename": "model.py",
    "parameters": {},
    "model_warmup": [],
}


def E(name: str, state: str | None = None, reason: str | None = None, version: str | None = "1") -> ModelEntry:
    return ModelEntry(name, version if state else None, state, reason)


def up(pod: str, *entries: ModelEntry, load_errors: dict[str, str] | None = None) -> ReplicaModels:
    return ReplicaModels(pod, True, None, tuple(entries), load_errors or {})


def down(pod: str, error: str = REFUSED) -> ReplicaModels:
    return ReplicaModels(pod, False, error)


def override(**fields: Any) -> ModelConfigOverride:
    return ModelConfigOverride.model_validate(fields)


def as_triton_reports(config: dict[str, Any]) -> dict[str, Any]:
    """What Triton reports back after loading ``config``: KIND_AUTO resolved (here to CPU), a 64-bit field as a
    string (protobuf JSON may print them so), instance groups named."""
    effective = copy.deepcopy(config)
    for index, group in enumerate(effective.get("instance_group", [])):
        group["kind"] = "KIND_CPU" if group["kind"] == "KIND_AUTO" else group["kind"]
        group.setdefault("name", f"{effective['name']}_{index}")
    batching = effective.get("dynamic_batching")
    if batching and "max_queue_delay_microseconds" in batching:
        batching["max_queue_delay_microseconds"] = str(batching["max_queue_delay_microseconds"])
    return effective


# ---- reduce_models -------------------------------------------------------------------------------------------

REDUCE_CASES: list[tuple[str, list[str] | None, list[ReplicaModels], Phase | None, str, str, list[dict[str, Any]]]] = [
    (
        "all ready",
        ["a", "b"],
        [up("p0", E("a", "READY"), E("b", "READY")), up("p1", E("a", "READY"), E("b", "READY"))],
        Phase.READY,
        "True/ModelsReady",
        "2 models ready on p0, p1",
        [{"name": "a", "version": "1", "state": "READY"}, {"name": "b", "version": "1", "state": "READY"}],
    ),
    (
        "one replica still loading",
        ["a"],
        [up("p0", E("a", "READY")), up("p1", E("a", "LOADING"))],
        Phase.LOADING,
        "False/ModelsLoading",
        "model a: loading on p1; ready on p0",
        [{"name": "a", "version": "1", "state": "LOADING", "reason": "loading on p1; ready on p0"}],
    ),
    (
        "new replica has not loaded it yet",
        ["a"],
        [up("p0", E("a", "READY")), up("p1", E("a"))],
        Phase.LOADING,
        "False/ModelsLoading",
        "not loaded yet on p1",
        [{"name": "a", "version": "1", "state": "LOADING", "reason": "not loaded yet on p1; ready on p0"}],
    ),
    (
        "wanted model unloaded or unloading is waiting to be loaded",
        ["a", "b"],
        [up("p0", E("a", "UNAVAILABLE", "unloaded"), E("b", "UNLOADING"))],
        Phase.LOADING,
        "False/ModelsLoading",
        "model a: not loaded yet on p0; model b: not loaded yet on p0",
        [
            {"name": "a", "state": "LOADING", "reason": "not loaded yet on p0"},
            {"name": "b", "state": "LOADING", "reason": "not loaded yet on p0"},
        ],
    ),
    (
        "unavailable on one replica only: degraded, naming it, with Triton's reason",
        ["identity", "broken"],
        [
            up("p0", E("identity", "READY"), E("broken", "READY")),
            up("p1", E("identity", "READY"), E("broken", "UNAVAILABLE", BROKEN_REASON)),
        ],
        Phase.DEGRADED,
        "False/ModelsDegraded",
        f"model broken: failed to load on p1: {BROKEN}; ready on p0",
        [
            {"name": "identity", "version": "1", "state": "READY"},
            {
                "name": "broken",
                "version": "1",
                "state": DEGRADED,
                "reason": f"failed to load on p1: {BROKEN}; ready on p0",
            },
        ],
    ),
    (
        "unavailable everywhere: failed with Triton's reason",
        ["broken"],
        [up("p0", E("broken", "UNAVAILABLE", BROKEN_REASON)), up("p1", E("broken", "UNAVAILABLE", BROKEN_REASON))],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"model broken loads on no replica: failed to load on p0, p1: {BROKEN}",
        [{"name": "broken", "state": "UNAVAILABLE", "reason": f"failed to load on p0, p1: {BROKEN}"}],
    ),
    (
        "different failures on different replicas are told apart",
        ["identity"],
        [up("p0", E("identity", "UNAVAILABLE", NO_GPU)), up("p1", E("identity", "UNAVAILABLE", BROKEN_REASON))],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"failed to load on p0: {NO_GPU}; failed to load on p1: {BROKEN}",
        [
            {
                "name": "identity",
                "state": "UNAVAILABLE",
                "reason": f"failed to load on p0: {NO_GPU}; failed to load on p1: {BROKEN}",
            }
        ],
    ),
    (
        "a model missing from the repository fails",
        ["nope"],
        [up("p0", E("identity"))],
        Phase.FAILED,
        "False/ModelLoadFailed",
        "model nope loads on no replica: not in the model repository of p0",
        [{"name": "nope", "state": "UNAVAILABLE", "reason": "not in the model repository of p0"}],
    ),
    (
        "missing, with the load error the caller kept",
        ["nope"],
        [up("p0", E("identity"), load_errors={"nope": POLL})],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"not in the model repository of p0 ({POLL})",
        [{"name": "nope", "state": "UNAVAILABLE", "reason": f"not in the model repository of p0 ({POLL})"}],
    ),
    (
        "a config Triton could not parse on a model never loaded: the kept load error",
        ["identity"],
        [up("p0", E("identity"), load_errors={"identity": POLL})],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"failed to load on p0: {POLL}",
        [{"name": "identity", "state": "UNAVAILABLE", "reason": f"failed to load on p0: {POLL}"}],
    ),
    (
        "override rejected while the previous config serves: degraded, not failed",
        ["identity"],
        [up("p0", E("identity", "READY"), load_errors={"identity": NO_GPU_LOAD})],
        Phase.DEGRADED,
        "False/ModelsDegraded",
        "the previous config still serves on p0, Triton rejected the new one: [400] load failed for model",
        [
            {
                "name": "identity",
                "version": "1",
                "state": DEGRADED,
                "reason": "the previous config still serves on p0, Triton rejected the new one: "
                + NO_GPU_LOAD.strip().rstrip(";"),
            }
        ],
    ),
    (
        "failed on one replica while loading on another: degraded (the failure is known already)",
        ["a"],
        [up("p0", E("a", "LOADING")), up("p1", E("a", "UNAVAILABLE", BROKEN_REASON))],
        Phase.DEGRADED,
        "False/ModelsDegraded",
        f"model a: failed to load on p1: {BROKEN}; loading on p0",
        [{"name": "a", "state": DEGRADED, "reason": f"failed to load on p1: {BROKEN}; loading on p0"}],
    ),
    (
        "a failure outranks another model still loading",
        ["a", "b"],
        [up("p0", E("a", "UNAVAILABLE", BROKEN_REASON), E("b", "LOADING"))],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"model a loads on no replica: failed to load on p0: {BROKEN}; model b: loading on p0",
        [
            {"name": "a", "state": "UNAVAILABLE", "reason": f"failed to load on p0: {BROKEN}"},
            {"name": "b", "state": "LOADING", "reason": "loading on p0"},
        ],
    ),
    (
        "an unreachable replica is reported, its models are not guessed",
        ["a"],
        [up("p0", E("a", "READY")), up("p1", E("a", "READY")), down("p2")],
        Phase.DEGRADED,
        "Unknown/ReplicaUnreachable",
        f"no model index from p2: {REFUSED}; model a ready on p0, p1",
        [{"name": "a", "version": "1", "state": "READY"}],
    ),
    (
        "unreachable beside a failure: both said",
        ["a"],
        [up("p0", E("a", "UNAVAILABLE", BROKEN_REASON)), down("p1", "Triton at 10.0.0.4:8000 did not answer")],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"failed to load on p0: {BROKEN}; no model index from p1: Triton at 10.0.0.4:8000 did not answer",
        [{"name": "a", "state": "UNAVAILABLE", "reason": f"failed to load on p0: {BROKEN}"}],
    ),
    (
        "no replica answered: nothing known, no phase",
        ["a"],
        [down("p0")],
        None,
        "Unknown/ReplicasUnreachable",
        f"no model index from p0: {REFUSED}",
        [
            {
                "name": "a",
                "state": UNKNOWN,
                "reason": f"no replica gave its model index (no model index from p0: {REFUSED})",
            }
        ],
    ),
    (
        "no replica at all",
        ["a"],
        [],
        None,
        "Unknown/NoReplicas",
        "no Triton replica is running",
        [{"name": "a", "state": UNKNOWN, "reason": "no Triton replica is running to report it"}],
    ),
    (
        "poll mode: every model a replica tried is wanted; never loaded and unloaded ones are not",
        None,
        [
            up("p0", E("b", "READY"), E("a", "READY"), E("c"), E("d", "UNAVAILABLE", "unloaded")),
            up("p1", E("a", "READY"), E("b", "READY"), E("c")),
        ],
        Phase.READY,
        "True/ModelsReady",
        "2 models ready on p0, p1",
        [{"name": "a", "version": "1", "state": "READY"}, {"name": "b", "version": "1", "state": "READY"}],
    ),
    (
        "poll mode: a model failed everywhere shows",
        None,
        [up("p0", E("a", "READY"), E("broken", "UNAVAILABLE", BROKEN_REASON))],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"model broken loads on no replica: failed to load on p0: {BROKEN}",
        [
            {"name": "a", "version": "1", "state": "READY"},
            {"name": "broken", "state": "UNAVAILABLE", "reason": f"failed to load on p0: {BROKEN}"},
        ],
    ),
    (
        "poll mode: a model one replica lacks",
        None,
        [up("p0", E("a", "READY"), E("b", "READY")), up("p1", E("a", "READY"))],
        Phase.DEGRADED,
        "False/ModelsDegraded",
        "model b: not in the model repository of p1; ready on p0",
        [
            {"name": "a", "version": "1", "state": "READY"},
            {
                "name": "b",
                "version": "1",
                "state": DEGRADED,
                "reason": "not in the model repository of p1; ready on p0",
            },
        ],
    ),
    (
        "poll mode, empty repository",
        None,
        [up("p0")],
        Phase.READY,
        "True/ModelsReady",
        "the repository has no models",
        [],
    ),
    (
        "explicit mode with spec.models empty",
        [],
        [up("p0", E("identity"))],
        Phase.READY,
        "True/ModelsReady",
        "spec.models is empty: no model is loaded",
        [],
    ),
    (
        "an unwanted model still loaded does not hold back Ready",
        ["a"],
        [up("p0", E("a", "READY"), E("old", "READY"))],
        Phase.READY,
        "True/ModelsReady",
        "model a ready on p0",
        [{"name": "a", "version": "1", "state": "READY"}],
    ),
    (
        "several versions ready, in numeric order",
        ["a"],
        [up("p0", E("a", "READY", version="10"), E("a", "READY", version="2")), up("p1", E("a", "READY", version="2"))],
        Phase.READY,
        "True/ModelsReady",
        "model a ready",
        [{"name": "a", "version": "2,10", "state": "READY"}],
    ),
    (
        "a version loading beside a ready one: the model serves",
        ["a"],
        [up("p0", E("a", "READY", version="1"), E("a", "LOADING", version="2"))],
        Phase.READY,
        "True/ModelsReady",
        "model a ready on p0",
        [{"name": "a", "version": "1", "state": "READY"}],
    ),
    (
        "duplicate wanted names count once",
        ["a", "a"],
        [up("p0", E("a", "READY"))],
        Phase.READY,
        "True/ModelsReady",
        "model a ready on p0",
        [{"name": "a", "version": "1", "state": "READY"}],
    ),
    (
        "a large fleet is named briefly",
        ["a"],
        [up(f"p{i}", E("a", "UNAVAILABLE", BROKEN_REASON)) for i in range(6)],
        Phase.FAILED,
        "False/ModelLoadFailed",
        f"failed to load on p0, p1, p2 and 3 more: {BROKEN}",
        [{"name": "a", "state": "UNAVAILABLE", "reason": f"failed to load on p0, p1, p2 and 3 more: {BROKEN}"}],
    ),
]


@pytest.mark.parametrize(
    ("wanted", "replicas", "phase", "condition", "message", "models"),
    [pytest.param(*case[1:], id=case[0]) for case in REDUCE_CASES],
)
def test_reduce_models(
    wanted: list[str] | None,
    replicas: list[ReplicaModels],
    phase: Phase | None,
    condition: str,
    message: str,
    models: list[dict[str, Any]],
) -> None:
    verdict = reduce_models(wanted, replicas)
    assert verdict.models == models
    assert verdict.phase == phase
    assert verdict.condition["type"] == "ModelsReady"
    assert f"{verdict.condition['status']}/{verdict.condition['reason']}" == condition
    assert message in verdict.condition["message"]
    assert set(verdict.condition) == {"type", "status", "reason", "message"}
    # status never carries nulls (the API server prunes them, so a status with them would always look changed)
    assert all(value is not None for model in verdict.models for value in model.values())
    # a Python traceback never reaches status
    assert "At:" not in verdict.condition["message"]


def test_an_unreachable_replica_is_told_in_the_adapters_words() -> None:
    verdict = reduce_models(
        ["a"], [down("p9", "Triton at 10.0.0.9:8000 did not answer the repository index within 5 s")]
    )
    assert (
        verdict.condition["message"]
        == "no model index from p9: Triton at 10.0.0.9:8000 did not answer the repository index within 5 s"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BROKEN_REASON, BROKEN),
        (NO_GPU_LOAD, NO_GPU_LOAD.strip().rstrip(";")),
        ("", ""),
        (None, ""),
        ("\n\n  second line only\n", "second line only"),
        ("x" * 400, "x" * 297 + "..."),
    ],
)
def test_triton_message(text: str | None, expected: str) -> None:
    assert triton_message(text) == expected


# ---- merge_config --------------------------------------------------------------------------------------------


def test_merge_sets_the_fields_and_keeps_the_rest() -> None:
    before = copy.deepcopy(IDENTITY)
    merged = merge_config(
        IDENTITY,
        override(
            maxBatchSize=4,
            dynamicBatching={"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [2, 4]},
            instanceGroups=[{"count": 2, "kind": "AUTO"}],
        ),
    )
    assert before == IDENTITY, "the input is not modified"
    assert merged["max_batch_size"] == 4
    assert merged["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert merged["dynamic_batching"]["preferred_batch_size"] == [2, 4]
    assert merged["dynamic_batching"]["priority_levels"] == 0  # the repository's other batcher settings stay
    assert merged["instance_group"] == [{"count": 2, "kind": "KIND_AUTO"}]
    for key in ("name", "backend", "input", "output", "version_policy", "default_model_filename"):
        assert merged[key] == IDENTITY[key], key
    marker = read_marker(merged)
    assert marker is not None
    assert marker["override"] == {
        "max_batch_size": 4,
        "dynamic_batching": {"max_queue_delay_microseconds": 500, "preferred_batch_size": [2, 4]},
        "instance_group": [{"count": 2, "kind": "KIND_AUTO"}],
    }
    assert marker["base"]["max_batch_size"] == 8
    json.dumps(merged)  # sendable as is


def test_lowering_max_batch_size_drops_preferred_sizes_above_it() -> None:
    """Triton rejects preferred_batch_size > max_batch_size with only "failed to poll from model repository"."""
    merged = merge_config(IDENTITY, override(maxBatchSize=4))
    assert merged["max_batch_size"] == 4
    assert "preferred_batch_size" not in merged["dynamic_batching"]
    assert merged["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    several = {**IDENTITY, "dynamic_batching": {"preferred_batch_size": [2, 4, 8]}}
    assert merge_config(several, override(maxBatchSize=4))["dynamic_batching"] == {"preferred_batch_size": [2, 4]}
    # and the repository's sizes come back with the repository's max_batch_size
    assert repository_config(merge_config(several, override(maxBatchSize=4))) == several


def test_dynamic_batching_on_a_model_without_it() -> None:
    plain = {k: v for k, v in IDENTITY.items() if k != "dynamic_batching"}
    merged = merge_config(plain, override(dynamicBatching={}))
    assert merged["dynamic_batching"] == {}
    assert read_marker(merged) == {"override": {"dynamic_batching": {}}, "base": {"dynamic_batching": None}}
    assert repository_config(merged) == plain  # taken back: the key goes again


@pytest.mark.parametrize(
    "first",
    [
        None,
        override(maxBatchSize=4),
        override(instanceGroups=[{"count": 3, "kind": "CPU"}]),
        override(maxBatchSize=2, dynamicBatching={"maxQueueDelayMicroseconds": 7}),
    ],
)
@pytest.mark.parametrize(
    "second",
    [
        None,
        override(),
        override(maxBatchSize=6),
        override(dynamicBatching={"preferredBatchSizes": [4]}),
        override(instanceGroups=[{"count": 2, "kind": "GPU"}, {"count": 1, "kind": "CPU"}]),
    ],
)
def test_changing_an_override_rebases_on_the_repository_config(
    first: ModelConfigOverride | None, second: ModelConfigOverride | None
) -> None:
    """Whatever override ran before, the next one applies to the repository's config, as if it were the first:
    a field dropped from the override gets the repository's value back, without an unload."""
    reported = as_triton_reports(IDENTITY)
    loaded = as_triton_reports(merge_config(reported, first))
    assert merge_config(loaded, second) == merge_config(reported, second)
    assert repository_config(loaded) == reported


@pytest.mark.parametrize("empty", [None, override(), override(instanceGroups=[]), override(dynamicBatching=None)])
def test_no_override_is_the_repository_config(empty: ModelConfigOverride | None) -> None:
    assert merge_config(IDENTITY, empty) == IDENTITY
    assert read_marker(merge_config(IDENTITY, empty)) is None


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ({}, {}),
        ({"maxBatchSize": 0}, {"max_batch_size": 0}),
        ({"dynamicBatching": {"preferredBatchSizes": []}}, {"dynamic_batching": {}}),
        (
            {"dynamicBatching": {"maxQueueDelayMicroseconds": 0, "preferredBatchSizes": [4, 8]}},
            {"dynamic_batching": {"max_queue_delay_microseconds": 0, "preferred_batch_size": [4, 8]}},
        ),
        (
            {"instanceGroups": [{"count": 2, "kind": "GPU"}, {"kind": "CPU"}, {}]},
            {
                "instance_group": [
                    {"count": 2, "kind": "KIND_GPU"},
                    {"count": 1, "kind": "KIND_CPU"},
                    {"count": 1, "kind": "KIND_AUTO"},
                ]
            },
        ),
        ({"instanceGroups": []}, {}),
    ],
)
def test_override_fields_use_tritons_names(spec: dict[str, Any], fields: dict[str, Any]) -> None:
    assert override_fields(override(**spec)) == fields


def test_an_unreadable_marker_counts_as_none() -> None:
    config = {**IDENTITY, "parameters": {MARKER_PARAMETER: {"string_value": "{not json"}}}
    assert read_marker(config) is None
    assert repository_config(config) == {**IDENTITY, "parameters": {}}


# ---- override_in_effect --------------------------------------------------------------------------------------

O4 = override(maxBatchSize=4)
O4_GROUPS = override(maxBatchSize=4, instanceGroups=[{"count": 2, "kind": "AUTO"}])
O_BATCHING = override(dynamicBatching={"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [2, 4]})


@pytest.mark.parametrize(
    ("config", "wanted", "expected"),
    [
        pytest.param(IDENTITY, None, True, id="repository config, no override"),
        pytest.param(IDENTITY, override(maxBatchSize=8), True, id="override equal to the repository config"),
        pytest.param(IDENTITY, O4, False, id="override not applied yet"),
        pytest.param(as_triton_reports(merge_config(IDENTITY, O4)), O4, True, id="override applied"),
        pytest.param(
            as_triton_reports(merge_config(IDENTITY, O4_GROUPS)), O4_GROUPS, True, id="AUTO matches the kind chosen"
        ),
        pytest.param(
            as_triton_reports(merge_config(IDENTITY, O_BATCHING)), O_BATCHING, True, id="64-bit field as a string"
        ),
        pytest.param(as_triton_reports(merge_config(IDENTITY, O4)), None, False, id="override removed"),
        pytest.param(as_triton_reports(merge_config(IDENTITY, O4_GROUPS)), O4, False, id="a field dropped from it"),
        pytest.param(
            as_triton_reports(merge_config(IDENTITY, O4)), override(maxBatchSize=2), False, id="override changed"
        ),
        pytest.param(
            {**IDENTITY, "instance_group": [{"kind": "KIND_CPU", "count": 1}]},
            override(instanceGroups=[{"count": 1, "kind": "GPU"}]),
            False,
            id="kind differs",
        ),
        pytest.param(
            {**IDENTITY, "instance_group": [{"kind": "KIND_CPU", "count": 1}] * 2},
            override(instanceGroups=[{"count": 1, "kind": "CPU"}]),
            False,
            id="group count differs",
        ),
        pytest.param(
            {k: v for k, v in IDENTITY.items() if k != "dynamic_batching"},
            override(dynamicBatching={}),
            False,
            id="batcher not enabled",
        ),
        pytest.param({**IDENTITY, "max_batch_size": "junk"}, O4, False, id="unreadable value"),
    ],
)
def test_override_in_effect(config: dict[str, Any], wanted: ModelConfigOverride | None, expected: bool) -> None:
    assert override_in_effect(config, wanted) is expected


# ---- plan_actions --------------------------------------------------------------------------------------------

IDENTITY_O4 = as_triton_reports(merge_config(IDENTITY, O4))


def dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


PLAN_CASES: list[tuple[str, dict[str, ModelConfigOverride | None], ReplicaModels, dict[str, Any], list[Any]]] = [
    (
        "already serving exactly the wanted models: nothing to do",
        {"identity": None, "sleeper": None},
        up("p0", E("identity", "READY"), E("sleeper", "READY"), E("broken")),
        {"identity": IDENTITY, "sleeper": {"name": "sleeper"}},
        [],
    ),
    (
        "override already in effect: nothing to do",
        {"identity": O4},
        up("p0", E("identity", "READY")),
        {"identity": IDENTITY_O4},
        [],
    ),
    (
        "override changed: reload in place with the merged config",
        {"identity": override(maxBatchSize=2)},
        up("p0", E("identity", "READY")),
        {"identity": IDENTITY_O4},
        [Load("identity", dumps(merge_config(IDENTITY_O4, override(maxBatchSize=2))))],
    ),
    (
        "override added to a loaded model",
        {"identity": O4},
        up("p0", E("identity", "READY")),
        {"identity": IDENTITY},
        [Load("identity", dumps(merge_config(IDENTITY, O4)))],
    ),
    (
        "override removed: the repository config again, without an unload",
        {"identity": None},
        up("p0", E("identity", "READY")),
        {"identity": IDENTITY_O4},
        [Load("identity", dumps(repository_config(IDENTITY_O4)))],
    ),
    (
        "unwanted extra model loaded: unload planned",
        {"identity": None},
        up("p0", E("identity", "READY"), E("sleeper", "READY")),
        {"identity": IDENTITY},
        [Unload("sleeper")],
    ),
    (
        "unwanted models not loaded, failed, or still loading: nothing yet",
        {},
        up(
            "p0",
            E("identity"),
            E("broken", "UNAVAILABLE", BROKEN_REASON),
            E("old", "UNAVAILABLE", "unloaded"),
            E("s", "LOADING"),
        ),
        {},
        [],
    ),
    (
        "never loaded: load",
        {"identity": None},
        up("p0", E("identity")),
        {},
        [Load("identity")],
    ),
    (
        "unloaded before: load again",
        {"identity": None},
        up("p0", E("identity", "UNAVAILABLE", "unloaded")),
        {},
        [Load("identity")],
    ),
    (
        "loading or unloading: wait for it",
        {"identity": None, "sleeper": None},
        up("p0", E("identity", "LOADING"), E("sleeper", "UNLOADING")),
        {},
        [],
    ),
    (
        "failed: a retry, marked with Triton's reason so the caller backs off",
        {"broken": None},
        up("p0", E("broken", "UNAVAILABLE", BROKEN_REASON)),
        {},
        [Load("broken", None, BROKEN)],
    ),
    (
        "missing from the repository: a retry, marked",
        {"nope": None},
        up("p0", E("identity")),
        {},
        [Load("nope", None, "not in the model repository")],
    ),
    (
        "missing, with the load error kept",
        {"nope": None},
        up("p0", E("identity"), load_errors={"nope": POLL}),
        {},
        [Load("nope", None, POLL)],
    ),
    (
        "override rejected before while the old config serves: a retry, marked",
        {"identity": override(instanceGroups=[{"count": 1, "kind": "GPU"}])},
        up("p0", E("identity", "READY"), load_errors={"identity": NO_GPU_LOAD}),
        {"identity": IDENTITY},
        [
            Load(
                "identity",
                dumps(merge_config(IDENTITY, override(instanceGroups=[{"count": 1, "kind": "GPU"}]))),
                NO_GPU_LOAD,
            )
        ],
    ),
    (
        "not loaded, with an override and no config known: the repository config first",
        {"identity": O4},
        up("p0", E("identity")),
        {},
        [Load("identity")],
    ),
    (
        "not loaded, with an override and a sibling replica's config: one load with the override",
        {"identity": O4},
        up("p0", E("identity")),
        {"identity": IDENTITY_O4},
        [Load("identity", dumps(merge_config(IDENTITY_O4, O4)))],
    ),
    (
        "ready but its config not fetched: cannot tell, nothing planned",
        {"identity": O4},
        up("p0", E("identity", "READY")),
        {},
        [],
    ),
    (
        "unreachable replica: nothing planned",
        {"identity": None},
        down("p0"),
        {},
        [],
    ),
    (
        "unloads first, then loads in spec order",
        {"sleeper": None, "identity": O4},
        up("p0", E("identity", "READY"), E("old", "READY"), E("sleeper")),
        {"identity": IDENTITY},
        [Unload("old"), Load("sleeper"), Load("identity", dumps(merge_config(IDENTITY, O4)))],
    ),
    (
        "spec.models emptied: unload everything loaded",
        {},
        up("p0", E("identity", "READY"), E("sleeper", "READY")),
        {},
        [Unload("identity"), Unload("sleeper")],
    ),
]


@pytest.mark.parametrize(
    ("wanted", "replica", "configs", "expected"), [pytest.param(*case[1:], id=case[0]) for case in PLAN_CASES]
)
def test_plan_actions(
    wanted: dict[str, ModelConfigOverride | None],
    replica: ReplicaModels,
    configs: dict[str, Any],
    expected: list[Any],
) -> None:
    assert plan_actions(wanted, replica, configs) == expected


@pytest.mark.parametrize(("wanted", "replica", "configs", "_"), [pytest.param(*c[1:], id=c[0]) for c in PLAN_CASES])
def test_a_plan_carried_out_needs_nothing_more(
    wanted: dict[str, ModelConfigOverride | None], replica: ReplicaModels, configs: dict[str, Any], _: list[Any]
) -> None:
    """Idempotence: after Triton did what was planned (and reports configs back its own way), the next plan
    for the same replica is empty, so repeated reconciles and operator restarts do nothing more."""
    if not replica.reachable:
        return
    rows = {e.name: e for e in replica.entries}
    reported = dict(configs)
    for action in plan_actions(wanted, replica, configs):
        if isinstance(action, Unload):
            rows[action.name] = E(action.name, "UNAVAILABLE", "unloaded")
        else:
            if action.last_error:  # retries of a failure are the caller's (with backoff), not a plan's
                return
            rows[action.name] = E(action.name, "READY")
            sent = json.loads(action.config) if action.config else configs.get(action.name, IDENTITY)
            reported[action.name] = as_triton_reports(sent) if action.config else repository_config(sent)
    after = up(replica.pod, *rows.values())
    if any(e.state == "READY" and e.name not in reported for e in after.entries if e.name in wanted):
        return  # a config the caller would have to fetch first (configs_needed)
    second = plan_actions(wanted, after, reported)
    # a model loaded from the repository first gets its override in a second step, then nothing more
    if second:
        assert all(isinstance(a, Load) and a.config for a in second), second
        for action in second:
            assert isinstance(action, Load)
            assert action.config is not None
            reported[action.name] = as_triton_reports(json.loads(action.config))
        second = plan_actions(wanted, after, reported)
    assert second == []


def test_configs_needed_lists_the_ready_wanted_models() -> None:
    replica = up("p0", E("identity", "READY"), E("sleeper", "LOADING"), E("old", "READY"), E("broken"))
    assert configs_needed({"identity": O4, "sleeper": None, "broken": None}, replica) == ["identity"]


def test_wanted_models_from_the_spec() -> None:
    assert wanted_models(None) is None
    assert wanted_models([]) == {}
    specs = [ModelSpec(name="a"), ModelSpec.model_validate({"name": "b", "config": {"maxBatchSize": 4}})]
    assert wanted_models(specs) == {"a": None, "b": O4}


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (7, 600.0), (10_000, 600.0)]
)
def test_retry_delay_backs_off_to_a_cap(failures: int, delay: float) -> None:
    assert retry_delay(failures) == delay


def test_the_condition_message_stays_bounded_with_many_failing_models() -> None:
    names = [f"model-{i}" for i in range(200)]
    verdict = reduce_models(names, [up("p0", *(E(n, "UNAVAILABLE", BROKEN_REASON) for n in names))])
    assert verdict.phase is Phase.FAILED
    assert len(verdict.condition["message"]) == 4096
    assert verdict.condition["message"].endswith("(every model's state is in status.models)")
    assert len(verdict.models) == 200
    assert all(m["reason"] == f"failed to load on p0: {BROKEN}" for m in verdict.models)


def test_many_unreachable_replicas_are_counted() -> None:
    verdict = reduce_models(["a"], [up("p0", E("a", "READY")), *(down(f"q{i}", "refused") for i in range(5))])
    assert verdict.condition["message"] == (
        "no model index from q0: refused; no model index from q1: refused; no model index from q2: refused; "
        "and none from 2 more replicas; model a ready on p0"
    )
