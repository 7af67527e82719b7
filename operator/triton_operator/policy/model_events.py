"""Events for model transitions: what changed between two status.models[] lists. No I/O.

One Event per model whose state changed, so ``kubectl describe tis`` and ``kubectl get events`` tell the story
of a rollout model by model (loaded, failed with Triton's words, removed) without the user polling status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from triton_operator.policy.models import DEGRADED, LOADING, READY, UNAVAILABLE, UNKNOWN


@dataclass(frozen=True)
class ModelEvent:
    """An Event to post on the InferenceService."""

    type: str  # Normal or Warning
    reason: str
    message: str


_REASONS = {
    READY: ("Normal", "ModelReady"),
    LOADING: ("Normal", "ModelLoading"),
    DEGRADED: ("Warning", "ModelDegraded"),
    UNAVAILABLE: ("Warning", "ModelFailed"),
    UNKNOWN: ("Warning", "ModelUnknown"),
}


def _line(model: dict[str, Any]) -> str:
    version = f" version {model['version']}" if model.get("version") else ""
    reason = f": {model['reason']}" if model.get("reason") else ""
    return f"model {model['name']}{version} is {model['state']}{reason}"


def model_events(previous: Sequence[dict[str, Any]] | None, current: Sequence[dict[str, Any]]) -> list[ModelEvent]:
    """Events for every model whose state appeared, changed or went away. Unchanged models give none, so
    re-observing a steady fleet posts nothing; a model that only changed its reason (another replica failed the
    same way) gives none either."""
    before = {m.get("name"): m for m in previous or []}
    after = {m.get("name"): m for m in current}
    events = []
    for name, model in after.items():
        old = before.get(name)
        if old is not None and old.get("state") == model.get("state"):
            continue
        type_, reason = _REASONS.get(str(model.get("state")), ("Normal", "ModelStateChanged"))
        events.append(ModelEvent(type_, reason, _line(model)))
    events.extend(
        ModelEvent("Normal", "ModelRemoved", f"model {name} is no longer served (removed from spec.models or from the repository)")
        for name in before
        if name not in after
    )
    return events
