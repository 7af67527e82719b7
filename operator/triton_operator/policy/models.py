"""Models across the Triton replicas: what status says about them, and what to load or unload where. No I/O.

Two pure halves, fed by ``triton_operator.adapters.triton`` (which turns each replica's repository index into a
:class:`ReplicaModels`):

- :func:`reduce_models` folds every replica's view into ``status.models[]``, a ``ModelsReady`` condition and a
  phase. Only what a replica said counts: a replica that did not answer is reported as not answering and never
  stands in for a guess about its models.
- :func:`plan_actions` compares one replica with ``spec.models`` (explicit model control) and lists the loads and
  unloads that make it serve exactly those models with their config overrides. It is idempotent: a replica that
  already matches gets no action, so running it on every reconcile, and after an operator restart, is safe.

Triton behaviour these rules rest on (Triton 2.51, checked against a real server in tests/triton):

- A config passed to the load API REPLACES the model's whole config; it is not merged into config.pbtxt. So an
  override is applied by :func:`merge_config` to a complete config Triton itself reported (``GET
  /v2/models/<m>/config``), never sent alone.
- Loading a model that is already loaded, without a config, is a no-op (it does not re-read config.pbtxt), so an
  override cannot be taken back by loading without one; only unload + load would, which interrupts the model on
  that replica. To revert or change an override in place instead, :func:`merge_config` records in the config it
  sends (a model parameter, :data:`MARKER_PARAMETER`) the repository's values of the fields it replaced and the
  override it applied. The record travels with the model inside Triton, so it survives operator restarts.
- A load that Triton rejects while an older config is loaded leaves the older one serving: the repository index
  still says READY. Only the load response carries the error, so the caller keeps it
  (:attr:`ReplicaModels.load_errors`) for status and for its retry backoff.
- An unknown model name and a config Triton cannot parse give the same answer, ``failed to poll from model
  repository``, and leave no trace in the index; a model that fails to initialise is UNAVAILABLE in the index with
  Triton's message as its reason, and (explicit mode) keeps the whole server unready until it loads.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from triton_operator.api.v1alpha1 import BatchingKind, ModelConfigOverride, ModelSpec, Phase

# Triton's model states (repository index ``state``). A model Triton knows of but never tried to load (explicit
# mode) has no state at all; a model that was unloaded is UNAVAILABLE with the reason "unloaded".
READY = "READY"
LOADING = "LOADING"
UNLOADING = "UNLOADING"
UNAVAILABLE = "UNAVAILABLE"
UNLOADED_REASON = "unloaded"
# States status.models[] reports beyond Triton's: the model is ready on some replicas and failed on others
# (DEGRADED), or no replica answered to say (UNKNOWN).
DEGRADED = "DEGRADED"
UNKNOWN = "UNKNOWN"

CONDITION_TYPE = "ModelsReady"

#: The model-config parameter in which :func:`merge_config` records what it overrode (a JSON string with keys
#: ``override``, the override applied, and ``base``, the replaced top-level fields' repository values, null for a
#: field the repository config did not have). Backends ignore parameters they do not know.
MARKER_PARAMETER = "serving.triton-operator.dev/override"

#: Longest Triton message carried into a reason; Python-backend errors append a traceback after the first line.
MAX_MESSAGE = 300
#: Longest ModelsReady message; with many failing models the rest is in status.models[].
MAX_CONDITION_MESSAGE = 4096
_CLIPPED = " ... (every model's state is in status.models)"
#: Replicas named in one reason before the rest are counted ("pod-a, pod-b, pod-c and 5 more").
MAX_PODS_NAMED = 3

_KINDS = {BatchingKind.GPU: "KIND_GPU", BatchingKind.CPU: "KIND_CPU", BatchingKind.AUTO: "KIND_AUTO"}


# ---- observations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One row of a replica's repository index: a model (version) and Triton's state for it.

    ``version``, ``state`` and ``reason`` are None where Triton gave none (a model never loaded in explicit mode
    has only a name; a READY model has no reason).
    """

    name: str
    version: str | None = None
    state: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ReplicaModels:
    """What one Triton replica (pod) said about its models, or that it did not answer.

    ``reachable`` False means the replica gave no index; ``error`` then says what happened (refused, timed out)
    and ``entries`` is empty: nothing is inferred about its models.

    ``load_errors`` is the caller's record of the last failed load request per model on this replica, in
    Triton's words. The index cannot show two failures: a config Triton rejects while the previous config keeps
    serving (still READY), and a config Triton cannot parse (no trace at all). The caller drops an entry once a
    load of that model succeeds or the wanted config changes.
    """

    pod: str
    reachable: bool
    error: str | None = None
    entries: tuple[ModelEntry, ...] = ()
    load_errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelsVerdict:
    """What :func:`reduce_models` concluded.

    ``models`` is ``status.models[]``; keys whose value would be null are left out, because the API server
    prunes nulls and a status holding them would look changed on every comparison. ``condition`` is the
    ``ModelsReady`` condition without lastTransitionTime (the status writer adds it). ``phase`` is None when the
    models say nothing about the phase (no replica to ask, or none answered); the caller keeps its own then.
    """

    models: list[dict[str, Any]]
    condition: dict[str, Any]
    phase: Phase | None


# ---- the status reducer --------------------------------------------------------------------------------------

_Kind = Literal["ready", "loading", "pending", "stale", "failed", "missing"]


@dataclass(frozen=True)
class _Seen:
    """One wanted model on one replica that answered."""

    pod: str
    kind: _Kind
    detail: str | None = None
    versions: tuple[str, ...] = ()


def triton_message(text: str | None) -> str:
    """Triton's message made fit for status: its first line, bounded.

    The first line carries the cause ("Internal: RuntimeError: ..."); what follows is a Python traceback or
    blank. The same rule as the startup-log explanation in ``policy.triton_log``.
    """
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    line = line.rstrip(";").strip()
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _pods(names: Iterable[str]) -> str:
    """Replica names for a message, bounded so a large fleet does not make status huge."""
    unique = list(dict.fromkeys(names))
    if len(unique) <= MAX_PODS_NAMED:
        return ", ".join(unique)
    return ", ".join(unique[:MAX_PODS_NAMED]) + f" and {len(unique) - MAX_PODS_NAMED} more"


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _entries_by_name(entries: Iterable[ModelEntry]) -> dict[str, list[ModelEntry]]:
    """Triton lists one row per version; rules apply per model."""
    grouped: dict[str, list[ModelEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.name, []).append(entry)
    return grouped


def _failure(entries: Sequence[ModelEntry]) -> str | None:
    """Triton's reason for a version that failed to load (UNAVAILABLE for any reason but a deliberate unload)."""
    for entry in entries:
        if entry.state == UNAVAILABLE and (entry.reason or "").strip() != UNLOADED_REASON:
            return triton_message(entry.reason) or "unavailable (Triton gave no reason)"
    return None


def _seen(replica: ReplicaModels, name: str, entries: Sequence[ModelEntry]) -> _Seen:
    """Classify one model on one answering replica; a version READY anywhere means the model serves."""
    load_error = replica.load_errors.get(name)
    ready = sorted({e.version or "" for e in entries if e.state == READY}, key=_version_key)
    if ready:
        if load_error:
            return _Seen(replica.pod, "stale", triton_message(load_error), tuple(ready))
        return _Seen(replica.pod, "ready", None, tuple(ready))
    if not entries:
        return _Seen(replica.pod, "missing", triton_message(load_error) if load_error else None)
    if any(e.state == LOADING for e in entries):
        return _Seen(replica.pod, "loading")
    failed = _failure(entries)
    if failed or load_error:
        return _Seen(replica.pod, "failed", failed or triton_message(load_error))
    return _Seen(replica.pod, "pending")  # never loaded, unloaded, or unloading: the operator loads it next


def _describe(seen: Sequence[_Seen]) -> str:
    """Where a model stands on each replica, most actionable first, replicas with the same story grouped."""
    parts: list[str] = []
    by_detail: dict[tuple[_Kind, str | None], list[str]] = {}
    for item in seen:
        by_detail.setdefault((item.kind, item.detail), []).append(item.pod)
    for (kind, detail), pods in sorted(by_detail.items(), key=lambda kv: _ORDER.index(kv[0][0])):
        where = _pods(pods)
        if kind == "failed":
            parts.append(f"failed to load on {where}: {detail}")
        elif kind == "stale":
            parts.append(f"the previous config still serves on {where}, Triton rejected the new one: {detail}")
        elif kind == "missing":
            parts.append(f"not in the model repository of {where}" + (f" ({detail})" if detail else ""))
        elif kind == "loading":
            parts.append(f"loading on {where}")
        elif kind == "pending":
            parts.append(f"not loaded yet on {where}")
        else:
            parts.append(f"ready on {where}")
    return "; ".join(parts)


_ORDER: tuple[_Kind, ...] = ("failed", "stale", "missing", "loading", "pending", "ready")


def _model_status(name: str, seen: Sequence[_Seen], unanswered: str | None) -> dict[str, Any]:
    """One ``status.models[]`` item: the model's state across the replicas that answered."""
    kinds = {item.kind for item in seen}
    versions = sorted({v for item in seen for v in item.versions if v}, key=_version_key)
    status: dict[str, Any] = {"name": name}
    if versions:
        status["version"] = ",".join(versions)
    if not seen:
        status["state"] = UNKNOWN
        status["reason"] = unanswered or "no Triton replica is running to report it"
    elif kinds == {"ready"}:
        status["state"] = READY
    elif kinds <= {"failed", "missing"}:
        status["state"] = UNAVAILABLE
        status["reason"] = _describe(seen)
    elif kinds & {"failed", "missing", "stale"}:
        status["state"] = DEGRADED
        status["reason"] = _describe(seen)
    else:
        status["state"] = LOADING
        status["reason"] = _describe(seen)
    return status


def _poll_mode_models(replicas: Sequence[ReplicaModels]) -> list[str]:
    """Without spec.models Triton loads the whole repository: every model some replica tried to load is wanted
    (a model that only failed is wanted too, so its failure shows); deliberate unloads and never-loaded rows are
    not."""
    names: set[str] = set()
    for replica in replicas:
        for entry in replica.entries:
            if entry.state and not (entry.state == UNAVAILABLE and (entry.reason or "").strip() == UNLOADED_REASON):
                names.add(entry.name)
    return sorted(names)


def _condition(status: str, reason: str, message: str) -> dict[str, Any]:
    """The ModelsReady condition; its message is bounded (each model's full story is in status.models[])."""
    if len(message) > MAX_CONDITION_MESSAGE:
        message = message[: MAX_CONDITION_MESSAGE - len(_CLIPPED)] + _CLIPPED
    return {"type": CONDITION_TYPE, "status": status, "reason": reason, "message": message}


def _summary(models: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"model {m['name']}: {m['reason']}" for m in models)


def reduce_models(wanted: list[str] | None, replicas: Sequence[ReplicaModels]) -> ModelsVerdict:
    """Fold the replicas' views into status.models[], the ModelsReady condition and a phase.

    ``wanted`` is spec.models' names (explicit model control), or None without spec.models (Triton loads the
    whole repository, so every model a replica reports is wanted). ``replicas`` should hold every pod whose
    Triton container has started, not only Kubernetes-ready ones: in explicit mode a model that fails to load makes
    Triton's readiness false, so the pods that hold the explanation are exactly the unready ones.

    The phase, most actionable first: Failed when some wanted model loads nowhere (failed or missing from the
    repository on every replica that answered, loading on none); Degraded when some replica fails to serve a
    wanted model that others serve or load, or a replica did not answer; Loading while a wanted model is loading or
    waiting to be loaded somewhere; Ready when every replica that answered serves every wanted model. None when
    there is no replica or none answered: nothing is known about the models then (condition Unknown).
    """
    answered = [r for r in replicas if r.reachable]
    silent = [r for r in replicas if not r.reachable]
    silent_text = "; ".join(
        f"no model index from {r.pod}: {r.error or 'no reason given'}" for r in silent[:MAX_PODS_NAMED]
    )
    if len(silent) > MAX_PODS_NAMED:
        silent_text += f"; and none from {len(silent) - MAX_PODS_NAMED} more replicas"

    names = list(dict.fromkeys(wanted)) if wanted is not None else _poll_mode_models(answered)
    unanswered = f"no replica gave its model index ({silent_text})" if silent else None
    indexes = [(replica, _entries_by_name(replica.entries)) for replica in answered]
    models = [
        _model_status(name, [_seen(replica, name, index.get(name, [])) for replica, index in indexes], unanswered)
        for name in names
    ]

    if not replicas:
        return ModelsVerdict(
            models, _condition("Unknown", "NoReplicas", "no Triton replica is running to report its models"), None
        )
    if not answered:
        return ModelsVerdict(models, _condition("Unknown", "ReplicasUnreachable", silent_text), None)

    failed = [m for m in models if m["state"] == UNAVAILABLE]
    degraded = [m for m in models if m["state"] == DEGRADED]
    loading = [m for m in models if m["state"] == LOADING]
    also = f"; {silent_text}" if silent else ""
    if failed:
        message = "; ".join(f"model {m['name']} loads on no replica: {m['reason']}" for m in failed)
        rest = _summary(degraded + loading)
        return ModelsVerdict(
            models,
            _condition("False", "ModelLoadFailed", message + (f"; {rest}" if rest else "") + also),
            Phase.FAILED,
        )
    if degraded:
        rest = _summary(loading)
        return ModelsVerdict(
            models,
            _condition("False", "ModelsDegraded", _summary(degraded) + (f"; {rest}" if rest else "") + also),
            Phase.DEGRADED,
        )
    if loading:
        return ModelsVerdict(models, _condition("False", "ModelsLoading", _summary(loading) + also), Phase.LOADING)
    if not models:
        served = "spec.models is empty: no model is loaded" if wanted is not None else "the repository has no models"
    else:
        served = f"{len(models)} models ready" if len(models) != 1 else f"model {models[0]['name']} ready"
    on = f" on {_pods(r.pod for r in answered)}" if models else ""
    if silent:
        return ModelsVerdict(
            models, _condition("Unknown", "ReplicaUnreachable", f"{silent_text}; {served}{on}"), Phase.DEGRADED
        )
    return ModelsVerdict(models, _condition("True", "ModelsReady", served + on), Phase.READY)


# ---- config overrides ----------------------------------------------------------------------------------------


def override_fields(override: ModelConfigOverride | None) -> dict[str, Any]:
    """The override in Triton's JSON names (protobuf snake_case), with only the fields the user set.

    Empty lists count as unset: Triton fills in its own default for an empty instance_group or
    preferred_batch_size, so "in effect" could never be confirmed and the model would be reloaded forever.
    """
    if override is None:
        return {}
    fields: dict[str, Any] = {}
    if override.max_batch_size is not None:
        fields["max_batch_size"] = override.max_batch_size
    if override.dynamic_batching is not None:
        batching: dict[str, Any] = {}
        if override.dynamic_batching.max_queue_delay_microseconds is not None:
            batching["max_queue_delay_microseconds"] = override.dynamic_batching.max_queue_delay_microseconds
        if override.dynamic_batching.preferred_batch_sizes:
            batching["preferred_batch_size"] = list(override.dynamic_batching.preferred_batch_sizes)
        fields["dynamic_batching"] = batching
    if override.instance_groups:
        fields["instance_group"] = [{"count": g.count, "kind": _KINDS[g.kind]} for g in override.instance_groups]
    return fields


def read_marker(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record :func:`merge_config` left in a config (``override`` and ``base``), or None if there is none
    or it is unreadable (then the config is taken as the repository's own)."""
    parameter = (config.get("parameters") or {}).get(MARKER_PARAMETER)
    if not isinstance(parameter, Mapping):
        return None
    try:
        marker = json.loads(parameter.get("string_value") or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("base"), dict):
        return None
    marker.setdefault("override", {})
    return marker


def repository_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The model's config as the repository has it: ``config`` with an earlier override taken back.

    The fields the override replaced get their recorded repository values again (or are removed when the
    repository config did not have them), and the record itself is dropped.
    """
    restored = copy.deepcopy(dict(config))
    marker = read_marker(restored)
    if marker is not None:
        for key, value in marker["base"].items():
            if value is None:
                restored.pop(key, None)
            else:
                restored[key] = copy.deepcopy(value)
    parameters = restored.get("parameters")
    if isinstance(parameters, dict) and MARKER_PARAMETER in parameters:
        restored["parameters"] = {k: v for k, v in parameters.items() if k != MARKER_PARAMETER}
    return restored


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values or []]


def merge_config(current: Mapping[str, Any], override: ModelConfigOverride | None) -> dict[str, Any]:
    """A complete Triton model config (JSON object) with ``override`` applied, for the load API.

    ``current`` must be a complete config Triton reported for the model (``GET /v2/models/<m>/config``), from
    this replica or any other: Triton replaces the whole config with what it is sent. An override applied
    earlier (recorded in :data:`MARKER_PARAMETER`) is taken back first, so changing or removing an override gives
    exactly "repository config + new override", with no unload.

    Field rules: ``max_batch_size`` replaces Triton's; ``dynamic_batching`` enables Triton's dynamic batcher and
    sets the given knobs, keeping the repository's other batcher settings; ``instance_groups`` replaces the
    repository's instance groups entirely (Triton names them and assigns GPUs). When the override lowers
    max_batch_size without naming preferred batch sizes, repository preferred sizes above it are dropped: Triton
    rejects such a config, and reports only "failed to poll from model repository".

    With no override (None, or nothing set) the result is the repository config.
    """
    base = repository_config(current)
    fields = override_fields(override)
    if not fields:
        return base
    merged = copy.deepcopy(base)
    touched: list[str] = []
    if "max_batch_size" in fields:
        merged["max_batch_size"] = fields["max_batch_size"]
        touched.append("max_batch_size")
    if "dynamic_batching" in fields:
        merged["dynamic_batching"] = {**(merged.get("dynamic_batching") or {}), **fields["dynamic_batching"]}
        touched.append("dynamic_batching")
    batching = merged.get("dynamic_batching")
    if isinstance(batching, dict) and "preferred_batch_size" not in fields.get("dynamic_batching", {}):
        limit = int(merged.get("max_batch_size") or 0)
        preferred = _ints(batching.get("preferred_batch_size"))
        kept = [size for size in preferred if size <= limit]
        if kept != preferred:
            merged["dynamic_batching"] = {k: v for k, v in batching.items() if k != "preferred_batch_size"}
            if kept:
                merged["dynamic_batching"]["preferred_batch_size"] = kept
            if "dynamic_batching" not in touched:
                touched.append("dynamic_batching")
    if "instance_group" in fields:
        merged["instance_group"] = copy.deepcopy(fields["instance_group"])
        touched.append("instance_group")
    marker = {"override": fields, "base": {key: copy.deepcopy(base.get(key)) for key in touched}}
    merged["parameters"] = {
        **(merged.get("parameters") or {}),
        MARKER_PARAMETER: {"string_value": json.dumps(marker, sort_keys=True, separators=(",", ":"))},
    }
    return merged


def _matches(config: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether Triton's effective config shows every field of the override (numbers compared as numbers:
    protobuf JSON may print 64-bit integers as strings; KIND_AUTO matches whatever kind Triton chose)."""
    try:
        if "max_batch_size" in fields and int(config.get("max_batch_size") or 0) != fields["max_batch_size"]:
            return False
        if "dynamic_batching" in fields:
            batching = config.get("dynamic_batching")
            if not isinstance(batching, Mapping):
                return False
            want = fields["dynamic_batching"]
            delay = batching.get("max_queue_delay_microseconds") or 0
            if "max_queue_delay_microseconds" in want and int(delay) != want["max_queue_delay_microseconds"]:
                return False
            preferred = _ints(batching.get("preferred_batch_size"))
            if "preferred_batch_size" in want and preferred != want["preferred_batch_size"]:
                return False
        if "instance_group" in fields:
            groups = list(config.get("instance_group") or [])
            if len(groups) != len(fields["instance_group"]):
                return False
            for have, want_group in zip(groups, fields["instance_group"], strict=True):
                if int(have.get("count") or 0) != want_group["count"]:
                    return False
                if want_group["kind"] != "KIND_AUTO" and have.get("kind") != want_group["kind"]:
                    return False
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def override_in_effect(config: Mapping[str, Any], override: ModelConfigOverride | None) -> bool:
    """Whether a loaded model runs with exactly this override (and no other the operator applied before).

    The override's fields must show in Triton's effective config; and if the operator overrode the model before
    (the marker), the recorded override must be this one, else a field the user has since removed from the
    override would stay overridden. No override is in effect when there is no marker.
    """
    fields = override_fields(override)
    marker = read_marker(config)
    if marker is not None and marker["override"] != fields:
        return False
    return _matches(config, fields)


# ---- planning loads and unloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """Load (or reload in place) a model. ``config`` is the complete JSON config to send, or None to load the
    repository's own. ``last_error`` is set when this repeats a load that failed on this replica: the caller
    must wait out its backoff before sending it (see :func:`plan_actions`)."""

    name: str
    config: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Unload:
    """Unload a model (Triton answers at once and finishes unloading in the background)."""

    name: str


Action = Load | Unload


def wanted_models(models: Sequence[ModelSpec] | None) -> dict[str, ModelConfigOverride | None] | None:
    """spec.models as :func:`plan_actions` takes it; None without spec.models (no model control)."""
    if models is None:
        return None
    return {model.name: model.config for model in models}


def configs_needed(wanted: Mapping[str, ModelConfigOverride | None], replica: ReplicaModels) -> list[str]:
    """The models whose effective config :func:`plan_actions` needs from this replica: every wanted model that
    is READY there (to see whether its override is in effect, or an old one must be taken back)."""
    grouped = _entries_by_name(replica.entries)
    return [name for name in wanted if any(e.state == READY for e in grouped.get(name, []))]


def _dumps(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def plan_actions(
    wanted: Mapping[str, ModelConfigOverride | None],
    replica: ReplicaModels,
    configs: Mapping[str, Mapping[str, Any]],
) -> list[Action]:
    """The loads and unloads that make ``replica`` serve exactly ``wanted`` (spec.models) with its overrides.

    Unloads come first (they free GPU memory for the loads), then loads in spec order. Nothing is planned for a
    replica that did not answer, or for a model that is LOADING or UNLOADING there (the next reconcile sees how
    that ended). A replica already serving exactly the wanted models with their overrides in effect gets ``[]``.

    ``configs`` maps a model name to a complete config Triton reported for it. For a model READY on this replica
    it must be this replica's (:func:`configs_needed` lists them); a model READY without one is skipped, since
    whether its override is in effect cannot be told. For a model not loaded here with an override, a config
    from any replica lets it load with the override in one step; without one it first loads with the repository
    config, and the next plan reloads it in place with the override merged in.

    What the caller must do: run a replica's actions in order, one at a time, each with a timeout covering a
    slow model load; record a failed load's message in :attr:`ReplicaModels.load_errors` (a rejected override
    leaves the old config serving, so only that record shows it) and clear it after a success or when the spec
    changes; and send a Load whose ``last_error`` is set only after a backoff per (replica, model) that grows
    with each consecutive failure (:func:`retry_delay`), requeueing the object for then rather than looping.
    Plans are recomputed from a fresh observation every time, which is what makes them safe across operator
    restarts: nothing is remembered but what Triton itself reports (and the marker it keeps in the config).
    """
    if not replica.reachable:
        return []
    grouped = _entries_by_name(replica.entries)
    actions: list[Action] = [
        Unload(name)
        for name, entries in grouped.items()
        if name not in wanted and any(e.state == READY for e in entries)
    ]
    for name, override in wanted.items():
        entries = grouped.get(name, [])
        states = {e.state for e in entries}
        last_error = replica.load_errors.get(name)
        if READY in states:
            config = configs.get(name)
            if config is None or override_in_effect(config, override):
                continue
            actions.append(Load(name, _dumps(merge_config(config, override)), last_error))
        elif states & {LOADING, UNLOADING}:
            continue
        else:
            failed = _failure(entries)
            if not entries and not last_error:
                last_error = "not in the model repository"
            source = configs.get(name)
            config_json = _dumps(merge_config(source, override)) if source and override_fields(override) else None
            actions.append(Load(name, config_json, last_error or failed))
    return actions


def retry_delay(failures: int, base: float = 10.0, cap: float = 600.0) -> float:
    """Seconds to wait before retrying a load that failed ``failures`` times in a row: doubling from ``base``,
    at most ``cap``. A model that cannot load costs one attempt per ``cap`` at worst, not a hot loop."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 32)))
