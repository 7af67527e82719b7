"""Property tests of the builders: any valid InferenceService parses, and its children keep the invariants.

The strategies draw manifests the way users write them (camelCase, optional fields left out) across every
spec field, keeping to what admission accepts: the CEL rules of the CRD (product needs GPUs, no conflicting
product label, no GPUs through triton.resources.limits, no reserved Triton flags, minReplicas <= maxReplicas,
one of maxUnavailable/minAvailable) and the core/v1 shapes the fields are copied into.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from triton_operator.api.v1alpha1 import (
    API_VERSION,
    DEFAULT_GPU_RESOURCE,
    GPU_PRODUCT_LABEL,
    KIND,
    MODEL_NAME_RE,
    MODEL_REPOSITORY_URI_RE,
    QUANTITY_RE,
    RESERVED_FLAGS_RE,
    InferenceService,
)
from triton_operator.render import parse_inference_service
from triton_operator.resources.children import DEPLOYMENT, PDB, SERVICE, desired_children

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")

# ---- small building blocks ----

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"

dns_label = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_LOWER),
    st.text(_LOWER + _DIGITS + "-", max_size=20),
    st.sampled_from(_LOWER + _DIGITS),
) | st.sampled_from(_LOWER)

label_value = st.text(_LOWER + _DIGITS + "ABCXYZ", min_size=1, max_size=20)
label_key = st.one_of(
    dns_label,
    st.builds(lambda prefix, name: f"{prefix}.example.com/{name}", dns_label, dns_label),
    st.sampled_from(["kubernetes.io/os", "kubernetes.io/arch", "topology.kubernetes.io/zone", "pool"]),
)


def optional_keys(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A dict holding a random subset of ``fields``, each drawn from its strategy: how users leave fields out."""
    return {key: draw(strategy) for key, strategy in fields.items() if draw(st.booleans())}


# ---- spec.modelRepository ----

bucket = st.text(_LOWER + _DIGITS + "-.", min_size=1, max_size=20).filter(lambda b: not b.startswith("."))
path_segment = st.text(_LOWER + _DIGITS + "-_.", min_size=1, max_size=12)
object_path = st.lists(path_segment, max_size=4).map("/".join)


@st.composite
def repository_uri(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["s3", "gs", "as", "pvc", "abs"]))
    path = draw(object_path)
    if scheme in ("s3", "gs"):
        uri = f"{scheme}://{draw(bucket)}" + (f"/{path}" if path or draw(st.booleans()) else "")
    elif scheme == "as":
        uri = f"as://{draw(dns_label)}/{draw(dns_label)}" + (f"/{path}" if path else "")
    elif scheme == "pvc":
        uri = f"pvc://{draw(dns_label)}" + (f"/{path}" if path or draw(st.booleans()) else "")
    else:
        uri = f"/{path}"
    assert re.match(MODEL_REPOSITORY_URI_RE, uri), uri
    return uri


@st.composite
def model_repository(draw: st.DrawFn) -> dict[str, Any]:
    repo: dict[str, Any] = {"uri": draw(repository_uri())}
    if draw(st.booleans()):
        repo["secretRef"] = {"name": draw(dns_label)}
    return repo


# ---- spec.models ----

model_name = st.from_regex(MODEL_NAME_RE, fullmatch=True).filter(lambda n: len(n) <= 64)


@st.composite
def model_config(draw: st.DrawFn) -> dict[str, Any]:
    config = _model_config(draw)
    # Admission keeps preferred batch sizes within maxBatchSize (Triton would refuse the config).
    batching = config.get("dynamicBatching") or {}
    if "maxBatchSize" in config and batching.get("preferredBatchSizes"):
        config["maxBatchSize"] = max(config["maxBatchSize"], *batching["preferredBatchSizes"])
    return config


def _model_config(draw: st.DrawFn) -> dict[str, Any]:
    return optional_keys(
        draw,
        {
            "maxBatchSize": st.integers(0, 1_000_000),
            "dynamicBatching": st.fixed_dictionaries(
                {},
                optional={
                    "maxQueueDelayMicroseconds": st.integers(0, 60_000_000),
                    "preferredBatchSizes": st.lists(st.integers(1, 1024), max_size=8),
                },
            ),
            "instanceGroups": st.lists(
                st.fixed_dictionaries(
                    {}, optional={"count": st.integers(1, 64), "kind": st.sampled_from(["GPU", "CPU", "AUTO"])}
                ),
                max_size=4,
            ),
        },
    )


@st.composite
def models(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(model_name, max_size=6, unique=True))
    result = []
    for name in names:
        model: dict[str, Any] = {"name": name}
        if draw(st.booleans()):
            model["config"] = draw(model_config())
        result.append(model)
    return result


# ---- spec.triton ----

_RESERVED_ARG = re.compile(RESERVED_FLAGS_RE)

triton_arg = st.one_of(
    st.sampled_from(
        [
            "--log-verbose=1",
            "--log-info=true",
            "--strict-model-config=false",
            "--exit-on-error=false",
            "--backend-config=python,shm-default-byte-size=1048576",
            "--pinned-memory-pool-byte-size=268435456",
            "--cuda-memory-pool-byte-size=0:268435456",
            "--model-load-thread-count=4",
            "--repository-poll-secs=0",
            "--rate-limit=off",
        ]
    ),
    st.builds(lambda name, value: f"--{name}={value}", dns_label, label_value),
).filter(lambda arg: not _RESERVED_ARG.search(arg))

env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,30}", fullmatch=True)
env_var = st.one_of(
    st.builds(lambda name, value: {"name": name, "value": value}, env_name, st.text(max_size=30)),
    st.builds(lambda name: {"name": name}, env_name),
    st.builds(
        lambda name, secret, key: {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}},
        env_name,
        dns_label,
        dns_label,
    ),
    st.builds(
        lambda name: {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        env_name,
    ),
)

quantity = st.one_of(
    st.integers(0, 10_000),
    st.builds(str, st.integers(0, 10_000)),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(1, 4096),
        st.sampled_from(["m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"]),
    ),
    st.builds(lambda whole, frac: f"{whole}.{frac}", st.integers(0, 64), st.integers(0, 99)),
    st.builds(lambda n, exp: f"{n}e{exp}", st.integers(1, 9), st.integers(0, 9)),
)
resource_list = st.dictionaries(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantity, max_size=3)


@st.composite
def triton_spec(draw: st.DrawFn) -> dict[str, Any]:
    return optional_keys(
        draw,
        {
            "image": st.sampled_from(
                [
                    "nvcr.io/nvidia/tritonserver:25.10-py3",
                    "registry.example.com/triton:dev",
                    "triton@sha256:" + "a" * 64,
                ]
            ),
            "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
            "imagePullSecrets": st.lists(st.builds(lambda n: {"name": n}, dns_label), max_size=2),
            "args": st.lists(triton_arg, max_size=6),
            "env": st.lists(env_var, max_size=5),
            "resources": st.fixed_dictionaries({}, optional={"requests": resource_list, "limits": resource_list}),
            "startupTimeoutSeconds": st.integers(30, 7200),
        },
    )


# ---- spec.gpu ----

gpu_product = st.sampled_from(["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "Tesla-T4", "NVIDIA-L4"])
gpu_resource_name = st.one_of(
    st.just(DEFAULT_GPU_RESOURCE),
    st.builds(lambda g, gb: f"nvidia.com/mig-{g}g.{gb}gb", st.integers(1, 7), st.sampled_from([5, 10, 20, 40, 80])),
)


@st.composite
def gpu_spec(draw: st.DrawFn) -> dict[str, Any] | None:
    """None leaves spec.gpu out (the default: one nvidia.com/gpu)."""
    if draw(st.integers(0, 5)) == 0:
        return None
    gpu: dict[str, Any] = {}
    count = draw(st.none() | st.just(0) | st.integers(0, 16))
    if count is not None:
        gpu["count"] = count
    effective = 1 if count is None else count
    if effective > 0 and draw(st.booleans()):
        gpu["product"] = draw(gpu_product)
    if draw(st.booleans()):
        gpu["resourceName"] = draw(gpu_resource_name)
    return gpu


# ---- placement ----


@st.composite
def toleration(draw: st.DrawFn) -> dict[str, Any]:
    """A toleration the pod API accepts: no key means Exists, Exists carries no value, seconds only for NoExecute."""
    key = draw(st.none() | label_key | st.just(GPU_TAINT_KEY))
    operator = "Exists" if key is None else draw(st.sampled_from([None, "Exists", "Equal"]))
    result: dict[str, Any] = {}
    if key is not None:
        result["key"] = key
    if operator is not None:
        result["operator"] = operator
    if operator != "Exists" and draw(st.booleans()):
        result["value"] = draw(label_value)
    effect = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
    if effect is not None:
        result["effect"] = effect
    if effect == "NoExecute" and draw(st.booleans()):
        result["tolerationSeconds"] = draw(st.integers(0, 3600))
    return result


def node_selector_term(key: str, values: list[str]) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}


affinity = st.fixed_dictionaries(
    {},
    optional={
        "nodeAffinity": st.builds(
            lambda key, values: {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [node_selector_term(key, values)]
                }
            },
            label_key,
            st.lists(label_value, min_size=1, max_size=3),
        ),
        "podAntiAffinity": st.builds(
            lambda weight, key, value: {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": weight,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {key: value}},
                        },
                    }
                ]
            },
            st.integers(1, 100),
            label_key,
            label_value,
        ),
    },
)

topology_spread_constraint = st.builds(
    lambda skew, topology_key, when, key, value: {
        "maxSkew": skew,
        "topologyKey": topology_key,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {key: value}},
    },
    st.integers(1, 5),
    st.sampled_from(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
    st.sampled_from(["DoNotSchedule", "ScheduleAnyway"]),
    label_key,
    label_value,
)


@st.composite
def autoscaling(draw: st.DrawFn) -> dict[str, Any]:
    max_replicas = draw(st.integers(1, 1000))
    spec: dict[str, Any] = {"maxReplicas": max_replicas}
    spec |= optional_keys(
        draw,
        {
            "minReplicas": st.integers(1, max_replicas),
            "targetQueueLatencyMilliseconds": st.integers(1, 600_000),
            "scaleUp": st.fixed_dictionaries({}, optional={"stabilizationWindowSeconds": st.integers(0, 3600)}),
            "scaleDown": st.fixed_dictionaries({}, optional={"stabilizationWindowSeconds": st.integers(0, 3600)}),
            "engine": st.sampled_from(["Operator", "HPA"]),
        },
    )
    source = draw(st.sampled_from([None, "Pods", "Prometheus"]))
    if source is not None:
        spec["metricsSource"] = source
    if source == "Prometheus" or draw(st.booleans()):
        spec["prometheus"] = {
            "url": draw(st.sampled_from(["http://prometheus.monitoring:9090", "https://prom.example.com"]))
        }
    return spec


int_or_percent = st.integers(0, 10) | st.builds(lambda p: f"{p}%", st.integers(0, 100))


@st.composite
def disruption_budget(draw: st.DrawFn) -> dict[str, Any]:
    budget: dict[str, Any] = {}
    if draw(st.booleans()):
        budget["enabled"] = draw(st.booleans())
    which = draw(st.sampled_from([None, "maxUnavailable", "minAvailable"]))
    if which is not None:
        budget[which] = draw(int_or_percent)
    return budget


@st.composite
def inference_service(draw: st.DrawFn) -> dict[str, Any]:
    """A whole manifest that admission accepts."""
    gpu = draw(gpu_spec())
    spec: dict[str, Any] = {"modelRepository": draw(model_repository())}
    if gpu is not None:
        spec["gpu"] = gpu
    spec |= optional_keys(
        draw,
        {
            "models": models(),
            "triton": triton_spec(),
            "replicas": st.integers(0, 1000),
            "autoscaling": autoscaling(),
            "disruptionBudget": disruption_budget(),
            "nodeSelector": st.dictionaries(label_key, label_value, max_size=4),
            "tolerations": st.lists(toleration(), max_size=4),
            "affinity": affinity,
            "topologySpreadConstraints": st.lists(topology_spread_constraint, max_size=2),
            "priorityClassName": st.sampled_from(["high-priority", "system-cluster-critical"]),
            "serviceAccountName": dns_label,
        },
    )
    # The product label is spec.gpu.product's to set; a user selector may repeat it, never contradict it.
    selector = spec.get("nodeSelector")
    if selector is not None:
        selector.pop(GPU_PRODUCT_LABEL, None)
        product = (gpu or {}).get("product")
        if product and draw(st.booleans()):
            selector[GPU_PRODUCT_LABEL] = product
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": draw(dns_label), "namespace": draw(dns_label), "uid": "0000-1111"},
        "spec": spec,
    }


# ---- invariants ----


def gpu_count(spec: dict[str, Any]) -> int:
    return int((spec.get("gpu") or {}).get("count", 1))


def is_gpu_resource(name: str) -> bool:
    return name.startswith(GPU_RESOURCE_PREFIXES)


def tolerates_gpu_taint(toleration: dict[str, Any]) -> bool:
    """Whether a toleration lets a pod onto nodes tainted nvidia.com/gpu=<anything>:NoSchedule."""
    return (
        toleration.get("operator") == "Exists"
        and toleration.get("key") in (None, "", GPU_TAINT_KEY)
        and toleration.get("effect") in (None, "", "NoSchedule")
    )


def triton_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    matching = [c for c in containers if c["name"] == "triton"]
    assert len(matching) == 1, containers
    return matching[0]


def check_command_line(spec: dict[str, Any], container: dict[str, Any]) -> None:
    """tritonserver first, the operator's repository flag, explicit model control iff spec.models (with no
    --load-model flag: the operator loads the models in place), user flags last."""
    args = container["args"]
    assert args[0] == "tritonserver"
    assert any(a.startswith("--model-repository=") for a in args)
    user_args = (spec.get("triton") or {}).get("args") or []
    assert args[len(args) - len(user_args) :] == user_args
    if "models" in spec:
        assert "--model-control-mode=explicit" in args
        assert "--strict-readiness=false" in args
        assert not any(a.startswith("--load-model") for a in args)
    else:
        assert not any(a.startswith(("--model-control-mode", "--load-model")) for a in args)


def check_gpu(spec: dict[str, Any], pod: dict[str, Any], container: dict[str, Any]) -> None:
    """The GPU limit, the taint toleration and the product selector come from spec.gpu alone."""
    count = gpu_count(spec)
    gpu = spec.get("gpu") or {}
    resource_name = gpu.get("resourceName", DEFAULT_GPU_RESOURCE)
    limits = (container.get("resources") or {}).get("limits") or {}
    pod_tolerations = pod.get("tolerations") or []
    user_tolerations = spec.get("tolerations") or []
    selector = pod.get("nodeSelector") or {}
    if count > 0:
        assert limits[resource_name] == count
        assert [k for k in limits if is_gpu_resource(k)] == [resource_name]
        assert any(tolerates_gpu_taint(t) for t in pod_tolerations), pod_tolerations
        if any(tolerates_gpu_taint(t) for t in user_tolerations):
            assert len(pod_tolerations) == len(user_tolerations)
        else:
            assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in pod_tolerations
            assert len(pod_tolerations) == len(user_tolerations) + 1
        if "product" in gpu:
            assert selector[GPU_PRODUCT_LABEL] == gpu["product"]
        else:
            assert GPU_PRODUCT_LABEL not in selector
    else:
        assert not any(is_gpu_resource(k) for k in limits), limits
        assert len(pod_tolerations) == len(user_tolerations)
        assert GPU_PRODUCT_LABEL not in selector


def check_placement(spec: dict[str, Any], pod: dict[str, Any]) -> None:
    """Whatever the user wrote for placement is carried over, never dropped or rewritten."""
    selector = pod.get("nodeSelector") or {}
    user_selector = spec.get("nodeSelector") or {}
    assert set(selector) - set(user_selector) <= {GPU_PRODUCT_LABEL}
    for key, value in user_selector.items():
        assert selector[key] == value
    pod_tolerations = pod.get("tolerations") or []
    user_tolerations = spec.get("tolerations") or []
    assert pod_tolerations[: len(user_tolerations)] == user_tolerations
    assert pod.get("affinity") == (spec.get("affinity") or None)
    assert pod.get("topologySpreadConstraints") == (spec.get("topologySpreadConstraints") or None)
    assert pod.get("priorityClassName") == spec.get("priorityClassName")
    assert pod.get("serviceAccountName") == spec.get("serviceAccountName")


def check_container(spec: dict[str, Any], container: dict[str, Any]) -> None:
    """User resources, env, image and pull policy survive next to what the operator adds."""
    triton = spec.get("triton") or {}
    user_resources = triton.get("resources") or {}
    resources = container.get("resources") or {}
    for key, value in (user_resources.get("requests") or {}).items():
        assert resources["requests"][key] == value
    for key, value in (user_resources.get("limits") or {}).items():
        assert resources["limits"][key] == value
        assert isinstance(value, int) or re.match(QUANTITY_RE, value)
    user_env = triton.get("env") or []
    assert (container.get("env") or [])[: len(user_env)] == user_env
    if "image" in triton:
        assert container["image"] == triton["image"]
    if "imagePullPolicy" in triton:
        assert container["imagePullPolicy"] == triton["imagePullPolicy"]


def check_repository(spec: dict[str, Any], pod: dict[str, Any], container: dict[str, Any]) -> None:
    """PVCs are mounted read-only; object stores and image paths are handed to Triton as the URI."""
    uri = spec["modelRepository"]["uri"]
    repository_flag = next(a for a in container["args"] if a.startswith("--model-repository="))
    if uri.startswith("pvc://"):
        claim = uri.removeprefix("pvc://").split("/", 1)[0]
        volumes = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert [v["persistentVolumeClaim"] for v in volumes] == [{"claimName": claim, "readOnly": True}]
        assert repository_flag == "--model-repository=/mnt/models"
    else:
        assert repository_flag == f"--model-repository={uri}"
    secret = spec["modelRepository"].get("secretRef")
    if secret:
        assert {"secretRef": {"name": secret["name"]}} in container["envFrom"]
    else:
        assert "envFrom" not in container


def check_replicas_and_budget(spec: dict[str, Any], by_kind: dict[str, dict[str, Any]]) -> None:
    """Replicas are left to an autoscaler when there is one (so server-side apply never fights it); the
    disruption budget exists only when more than one replica may run and the user did not turn it off."""
    deployment = by_kind["Deployment"]
    autoscaled = "autoscaling" in spec
    assert ("replicas" in deployment["spec"]) is (not autoscaled)
    if not autoscaled:
        assert deployment["spec"]["replicas"] == spec.get("replicas", 1)

    max_replicas = spec["autoscaling"]["maxReplicas"] if autoscaled else spec.get("replicas", 1)
    budget = spec.get("disruptionBudget") or {}
    wants_budget = max_replicas > 1 and budget.get("enabled", True)
    assert ("PodDisruptionBudget" in by_kind) is wants_budget
    if wants_budget:
        pdb_spec = by_kind["PodDisruptionBudget"]["spec"]
        assert pdb_spec["selector"] == deployment["spec"]["selector"]
        limit = {k: v for k, v in pdb_spec.items() if k != "selector"}
        if "minAvailable" in budget:
            assert limit == {"minAvailable": budget["minAvailable"]}
        else:
            assert limit == {"maxUnavailable": budget.get("maxUnavailable", 1)}


@settings(max_examples=1000, deadline=None)
@given(inference_service())
def test_any_valid_inference_service_builds_children_that_keep_the_invariants(manifest: dict[str, Any]) -> None:
    # Parsing with the models directly and through render's parser must both accept the manifest.
    InferenceService.model_validate(manifest)
    isvc = parse_inference_service(manifest)
    children = desired_children(isvc)
    present = children.present()
    json.dumps(present)  # every manifest can go on the wire as it is

    by_kind = {m["kind"]: m for m in present}
    assert len(by_kind) == len(present)
    assert {"Deployment", "Service"} <= set(by_kind)
    assert children.manifests[DEPLOYMENT] is by_kind["Deployment"]
    assert children.manifests[SERVICE] is by_kind["Service"]
    assert children.manifests[PDB] is by_kind.get("PodDisruptionBudget")
    for child in present:
        assert child["metadata"]["name"] == manifest["metadata"]["name"]
        assert child["metadata"]["namespace"] == manifest["metadata"]["namespace"]
        assert child["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"

    spec = manifest["spec"]
    event(
        f"uri scheme {spec['modelRepository']['uri'].partition('://')[0] if '://' in spec['modelRepository']['uri'] else 'path'}"
    )
    event(f"gpu count {'0' if gpu_count(spec) == 0 else '>0'}, product {'product' in (spec.get('gpu') or {})}")
    event(f"autoscaled {'autoscaling' in spec}, budget {'PodDisruptionBudget' in by_kind}")
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = triton_container(deployment)
    check_command_line(spec, container)
    check_gpu(spec, pod, container)
    check_placement(spec, pod)
    check_container(spec, container)
    check_repository(spec, pod, container)
    check_replicas_and_budget(spec, by_kind)

    # The pod selector picks the pods of this template and the Service routes to them.
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    assert by_kind["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
