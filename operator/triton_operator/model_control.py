"""Models on the running replicas: observe each Triton, load and unload in place, open the readiness gate.

Called from every reconcile of an InferenceService. It asks each replica whose Triton container runs for its
repository index (all at once, each bounded by a timeout), and with ``spec.models`` plans what each replica must
load or unload (``policy.models.plan_actions``) and hands that to one background task per replica: a model load
can take minutes, and must hold up neither this reconcile nor any other. A task that ends asks for a reconcile,
which observes the outcome. Then the pure reducer turns the observations into status.

What is remembered between reconciles is only the last failed load per (replica, model), for status and for the
retry backoff; everything else is read from Triton each time, which makes restarts of the operator safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from triton_operator.adapters.triton import (
    DEFAULT_HTTP_PORT,
    DEFAULT_LOAD_TIMEOUT,
    DEFAULT_TIMEOUT,
    TritonError,
    TritonReplica,
    TritonUnreachable,
    observe_all,
)
from triton_operator.api.v1alpha1 import InferenceService, ModelConfigOverride
from triton_operator.policy.models import (
    LOADING,
    READY,
    Action,
    Load,
    ModelsVerdict,
    ReplicaModels,
    configs_needed,
    override_fields,
    plan_actions,
    reduce_models,
    retry_delay,
    wanted_models,
)
from triton_operator.policy.observations import PodObservation
from triton_operator.policy.readiness_gate import gate_change, replica_settled, runnable_actions
from triton_operator.store import Key

log = logging.getLogger(__name__)

#: Seconds between observations while something is under way (a model loading, a replica not yet settled).
BUSY_RESYNC_SECONDS = 3.0
#: Seconds between observations while a replica does not answer, or a model failed and nothing will retry it.
QUIET_RESYNC_SECONDS = 30.0
#: Seconds between observations of a settled fleet: catches a model that failed or was unloaded behind the
#: operator's back. Pod events (a container restart) trigger a reconcile sooner.
SETTLED_RESYNC_SECONDS = 300.0


class PodWriter(Protocol):
    """The one API call model control makes (``adapters.kube.KubeAdapter`` in production)."""

    async def patch_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> None: ...


@dataclass
class LoadFailure:
    """The last failed load of one model on one replica."""

    message: str
    failures: int
    retry_at: float
    override: str  # the override it was tried with: a different one is a fresh start


@dataclass(frozen=True)
class KnownConfigs:
    """Model configs Triton reported in this round."""

    own: dict[str, dict[str, dict[str, Any]]]  # pod -> model -> that replica's effective config
    shared: dict[str, dict[str, Any]]  # model -> a config some replica reported (to load with an override at once)


@dataclass(frozen=True)
class ModelsOutcome:
    """What a reconcile learns: the verdict for status and when to look again (None: a running task will ask)."""

    verdict: ModelsVerdict
    resync_after: float | None


def _override_key(override: ModelConfigOverride | None) -> str:
    return json.dumps(override_fields(override), sort_keys=True)


def _without_address(error: TritonError, replica: TritonReplica) -> str:
    """The replica is named by its pod in status; its address adds nothing there."""
    return str(error).removeprefix(f"Triton at {replica.address}: ")


class ModelControl:
    """Observes and steers the models of every InferenceService's replicas."""

    def __init__(
        self,
        pods: PodWriter,
        request_reconcile: Callable[[Key], None],
        now: Callable[[], str],
        *,
        port: int = DEFAULT_HTTP_PORT,
        timeout: float = DEFAULT_TIMEOUT,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
        settled_resync: float = SETTLED_RESYNC_SECONDS,
    ) -> None:
        self._pods = pods
        self._request_reconcile = request_reconcile
        self._now = now
        self.port = port
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.settled_resync = settled_resync
        self._tasks: dict[tuple[Key, str], asyncio.Task[None]] = {}
        # InferenceService -> pod -> model -> its last failed load there
        self._failures: dict[Key, dict[str, dict[str, LoadFailure]]] = {}

    # ---- the reconcile's entry points ----

    async def sync(self, key: Key, isvc: InferenceService, pods: Sequence[PodObservation]) -> ModelsOutcome:
        """Observe the replicas, start what must change, set readiness gates; the models' part of status."""
        live = [p for p in pods if p.ip and p.running_since and not p.deleting]
        self._forget_pods(key, {p.name for p in live})
        wanted = wanted_models(isvc.spec.models)
        replicas = await observe_all(
            [(p.name, str(p.ip)) for p in live],
            port=self.port,
            timeout=self.timeout,
            load_errors={p.name: self._load_errors(key, p.name, wanted) for p in live},
        )
        settled = {r.pod: False for r in replicas}
        retry_at: list[float] = []
        if wanted is not None:
            hosts = {p.name: str(p.ip) for p in live}
            configs = await self._configs(wanted, replicas, hosts)
            for replica in replicas:
                if (key, replica.pod) in self._tasks or not replica.reachable:
                    continue
                actions = plan_actions(wanted, replica, {**configs.shared, **configs.own.get(replica.pod, {})})
                waiting = self._in_backoff(key, replica.pod)
                runnable = runnable_actions(actions, set(waiting))
                retry_at.extend(waiting[a.name] for a in actions if isinstance(a, Load) and a.name in waiting)
                settled[replica.pod] = replica_settled(wanted, replica, runnable)
                if runnable:
                    self._start(key, replica.pod, hosts[replica.pod], runnable, wanted)
            await self._open_gates(key, live, settled)
        verdict = reduce_models(list(wanted) if wanted is not None else None, replicas)
        return ModelsOutcome(verdict, self._resync_after(key, replicas, settled, retry_at, verdict, wanted is not None))

    def busy(self, key: Key) -> bool:
        """Whether a load or unload for this InferenceService is under way."""
        return any(task_key[0] == key for task_key in self._tasks)

    def forget(self, key: Key) -> None:
        """The InferenceService is gone: stop its loads and drop what was remembered of it."""
        for task_key in [k for k in self._tasks if k[0] == key]:
            self._tasks.pop(task_key).cancel()
        self._failures.pop(key, None)

    async def stop(self) -> None:
        """Cancel every running load (Triton finishes it on its own; the next operator sees the outcome)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- observation helpers ----

    def _load_errors(self, key: Key, pod: str, wanted: Mapping[str, ModelConfigOverride | None] | None) -> dict[str, str]:
        """Failed loads still relevant (of a model still wanted with the same override); the others are dropped."""
        failures = self._failures.get(key, {}).get(pod, {})
        for model in list(failures):
            if wanted is None or model not in wanted or failures[model].override != _override_key(wanted[model]):
                del failures[model]
        return {model: failure.message for model, failure in failures.items()}

    def _in_backoff(self, key: Key, pod: str) -> dict[str, float]:
        """Models whose last load failed on this replica and whose retry time has not come: model -> when."""
        now = time.monotonic()
        failures = self._failures.get(key, {}).get(pod, {})
        return {model: failure.retry_at for model, failure in failures.items() if failure.retry_at > now}

    def _forget_pods(self, key: Key, live: set[str]) -> None:
        pods = self._failures.get(key, {})
        for gone in set(pods) - live:
            del pods[gone]

    async def _configs(
        self,
        wanted: Mapping[str, ModelConfigOverride | None],
        replicas: Sequence[ReplicaModels],
        hosts: Mapping[str, str],
    ) -> KnownConfigs:
        """Each replica's effective config of the wanted models it has READY (plan_actions needs them to see
        whether an override is in effect), fetched concurrently; a config that cannot be read is left out, and
        the plan then waits for the next reconcile for that model."""

        async def fetch(replica: ReplicaModels) -> dict[str, dict[str, Any]]:
            names = configs_needed(wanted, replica)
            found: dict[str, dict[str, Any]] = {}
            if not names:
                return found
            try:
                async with TritonReplica(hosts[replica.pod], self.port, timeout=self.timeout) as triton:
                    for name in names:
                        found[name] = await triton.config(name)
            except TritonError as error:
                log.info("%s: %s", replica.pod, error)
            return found

        reachable = [r for r in replicas if r.reachable]
        results = await asyncio.gather(*(fetch(r) for r in reachable))
        own = {r.pod: result for r, result in zip(reachable, results, strict=True)}
        shared: dict[str, dict[str, Any]] = {}
        for configs in own.values():
            for name, config in configs.items():
                shared.setdefault(name, config)
        return KnownConfigs(own, shared)

    # ---- acting ----

    def _start(
        self,
        key: Key,
        pod: str,
        host: str,
        actions: list[Action],
        wanted: Mapping[str, ModelConfigOverride | None],
    ) -> None:
        overrides = {name: _override_key(override) for name, override in wanted.items()}
        task = asyncio.create_task(self._perform(key, pod, host, actions, overrides), name=f"models-{key[1]}-{pod}")
        self._tasks[(key, pod)] = task

    async def _perform(
        self, key: Key, pod: str, host: str, actions: list[Action], overrides: dict[str, str]
    ) -> None:
        """Run one replica's actions in order; record each failed load with its backoff; ask for a reconcile."""
        try:
            async with TritonReplica(host, self.port, timeout=self.timeout, load_timeout=self.load_timeout) as triton:
                for action in actions:
                    try:
                        await triton.perform(action)
                    except TritonUnreachable as error:
                        log.info("%s/%s %s: %s", *key, pod, error)
                        return  # the next observation reports the replica as unreachable
                    except TritonError as error:
                        self._record_failure(key, pod, action, _without_address(error, triton), overrides)
                    else:
                        self._failures.get(key, {}).get(pod, {}).pop(action.name, None)
                        log.info("%s/%s %s: %s %s", *key, pod, type(action).__name__.lower(), action.name)
        except Exception:  # a bug here must not kill the task silently
            log.exception("%s/%s %s: model control failed", *key, pod)
        finally:
            self._tasks.pop((key, pod), None)
            self._request_reconcile(key)

    def _record_failure(self, key: Key, pod: str, action: Action, message: str, overrides: dict[str, str]) -> None:
        on_pod = self._failures.setdefault(key, {}).setdefault(pod, {})
        previous = on_pod.get(action.name)
        failures = (previous.failures if previous else 0) + 1
        delay = retry_delay(failures)
        log.warning("%s/%s %s: %s (retry in %.0f s)", *key, pod, message, delay)
        on_pod[action.name] = LoadFailure(
            message, failures, time.monotonic() + delay, overrides.get(action.name, "{}")
        )

    async def _open_gates(self, key: Key, pods: Sequence[PodObservation], settled: Mapping[str, bool]) -> None:
        for pod in pods:
            change = gate_change(pod, settled.get(pod.name, False))
            if change is None:
                continue
            try:
                await self._pods.patch_pod_condition(key[0], pod.name, change.as_condition(self._now()))
            except Exception as error:  # the pod may be gone; the next reconcile looks again
                log.info("%s/%s: cannot set the readiness gate of %s: %s", *key, pod.name, error)

    def _resync_after(
        self,
        key: Key,
        replicas: Sequence[ReplicaModels],
        settled: Mapping[str, bool],
        retry_at: Sequence[float],
        verdict: ModelsVerdict,
        controlling: bool,
    ) -> float | None:
        if self.busy(key):
            return None  # the task asks for a reconcile when it ends
        if retry_at:
            return max(0.0, min(retry_at) - time.monotonic()) + 0.1
        if any(not r.reachable for r in replicas):
            return QUIET_RESYNC_SECONDS
        if (controlling and not all(settled.values())) or any(m.get("state") == LOADING for m in verdict.models):
            return BUSY_RESYNC_SECONDS
        if any(m.get("state") != READY for m in verdict.models):
            return QUIET_RESYNC_SECONDS  # failed and not retried by the operator (poll mode): look now and then
        return self.settled_resync
