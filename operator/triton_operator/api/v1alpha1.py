"""InferenceService v1alpha1: the single source of truth for the API.

The pydantic models here serve three purposes at once: the operator parses objects with them, the CRD's
OpenAPI schema is generated from them (``triton_operator.api.crd``), and ``kubectl explain`` shows their field
descriptions. Cross-field rules are CEL ``x-kubernetes-validations`` attached through ``json_schema_extra`` so
the API server rejects bad manifests at admission, with messages that name the field and the fix.

Defaults live in these models, not in the CRD schema: a schema default would be written back into the stored
spec, and GitOps tools would then see a diff the user never wrote.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "serving.triton-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAMES = ("tis",)

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

# Flags the operator sets itself; a user setting them in spec.triton.args would silently fight the operator.
RESERVED_TRITON_FLAGS = (
    "model-repository",
    "model-store",
    "http-port",
    "grpc-port",
    "metrics-port",
    "model-control-mode",
    "load-model",
    "strict-readiness",
)
# tritonserver parses flags with getopt_long, which also takes any unambiguous abbreviation (--model-repo=...,
# --model-control=poll): a flag matches when its name, up to '=', whitespace or the end, is at least three
# characters of a reserved flag. No other tritonserver flag is such a prefix of a reserved one.
_SHORTEST_ABBREVIATION = 3


def _abbreviations_re(flag: str) -> str:
    """``flag`` or any abbreviation of it at least three characters long, as a regex."""
    tail = ""
    for char in reversed(flag[_SHORTEST_ABBREVIATION:]):
        tail = f"(?:{char}{tail})?"
    return flag[:_SHORTEST_ABBREVIATION] + tail


RESERVED_FLAGS_RE = "^--(?:" + "|".join(_abbreviations_re(f) for f in RESERVED_TRITON_FLAGS) + r")(?:[=\s]|$)"
_RESERVED_FLAGS_TEXT = ", ".join(f"--{flag}" for flag in RESERVED_TRITON_FLAGS)

MODEL_REPOSITORY_URI_RE = r"^(s3://[^/\s]+(/\S*)?|gs://[^/\s]+(/\S*)?|as://[^/\s]+/[^/\s]+(/\S*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/\S*)?|/\S*)$"
DNS_LABEL_RE = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MODEL_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
GPU_RESOURCE_RE = r"^nvidia\.com/(gpu|mig-[0-9]+g\.[0-9]+gb)$"
PROMETHEUS_URL_RE = r"^https?://\S+$"
PERCENT_RE = r"^(100|[1-9]?[0-9])%$"
QUANTITY_RE = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]i?|Ki)?$"


def unique_model_names(models: list[ModelSpec] | None) -> list[ModelSpec] | None:
    """The API server enforces this for a list-map keyed by name; offline parsing must too."""
    names = [model.name for model in models or []]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Duplicate value: model names must be unique, {', '.join(duplicates)} appears more than once")
    return models


def with_rules(*rules: JsonDict) -> ConfigDict:
    """The API models' configuration plus CEL rules on the object itself (cross-field constraints)."""
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={"x-kubernetes-validations": list(rules)},
    )


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry; ``field_path`` points the error at a child field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def matching(regex: str, message: str) -> AfterValidator:
    """A pydantic check that a string matches ``regex``, for fields whose CRD schema checks the same regex with a
    CEL rule (``self.matches``) rather than a ``pattern``: a pattern's error only echoes the regex, a rule's
    message tells the user what to write."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):  # not search: Python's $ also matches before a final newline
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _replicas_or_percent(value: int | str) -> int | str:
    if (isinstance(value, int) and value < 0) or (isinstance(value, str) and not re.fullmatch(PERCENT_RE, value)):
        raise ValueError("must be a number of replicas such as 1 or a percentage such as 25%")
    return value


def _budget_rule(field: str) -> JsonDict:
    return cel(
        f"!has(self.{field}) || (type(self.{field}) == int ? int(self.{field}) >= 0 : "
        f"string(self.{field}).matches(r'{PERCENT_RE}'))",
        f"spec.disruptionBudget.{field} must be a number of replicas such as 1 or a percentage from 0% to 100% "
        "such as 25%",
        f".{field}",
    )


class ApiModel(BaseModel):
    """Base for every API object: camelCase on the wire, unknown fields rejected, defaults filled in memory."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


IntOrString = Annotated[
    int | str,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]
ReplicasOrPercent = Annotated[IntOrString, AfterValidator(_replicas_or_percent)]
Quantity = Annotated[
    int | str,
    Field(
        json_schema_extra={
            "maxLength": 64,
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                cel(
                    f"type(self) == int || self.matches(r'{QUANTITY_RE}')",
                    "must be a Kubernetes quantity such as 500m, 2, 4Gi or 1.5",
                )
            ],
        }
    ),
]


class SecretReference(ApiModel):
    """A Secret in the InferenceService's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a Secret in the same namespace.",
    )


class ModelRepository(ApiModel):
    """Where Triton finds its models."""

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "Model repository Triton serves from. s3://bucket/path, gs://bucket/path and as://account/container/path "
            "are read by Triton itself; pvc://<claim>[/<subpath>] mounts a PersistentVolumeClaim read-only; "
            "an absolute path such as /models is a directory inside the Triton image."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.matches(r'{MODEL_REPOSITORY_URI_RE}')",
                    "spec.modelRepository.uri must be s3://bucket/path, gs://bucket/path, as://account/container/path, "
                    "pvc://<claim>[/<subpath>] (claim: a lowercase DNS label) or an absolute path such as /models",
                )
            ]
        },
    )
    secret_ref: SecretReference | None = Field(
        default=None,
        description=(
            "Credentials for the object store, handed to Triton as environment variables (envFrom), e.g. "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_DEFAULT_REGION for s3://, AZURE_STORAGE_ACCOUNT/"
            "AZURE_STORAGE_KEY for as://. For gs:// the Secret is also mounted and GOOGLE_APPLICATION_CREDENTIALS "
            "points at its key gcloud-application-credentials.json."
        ),
    )


class BatchingKind(StrEnum):
    """Where Triton places a model's instances."""

    GPU = "GPU"
    CPU = "CPU"
    AUTO = "AUTO"


class DynamicBatching(ApiModel):
    """Triton's dynamic batcher: groups requests that arrive close together into one batch."""

    max_queue_delay_microseconds: int | None = Field(
        default=None,
        ge=0,
        le=60_000_000,
        description="How long a request may wait in the queue for a batch to fill, in microseconds.",
    )
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None,
        max_length=32,
        description="Batch sizes the batcher tries to form, each at least 1.",
    )


class InstanceGroup(ApiModel):
    """A group of identical model instances."""

    count: int = Field(default=1, ge=1, le=64, description="Number of instances of the model, at least 1.")
    kind: BatchingKind = Field(
        default=BatchingKind.AUTO,
        description="GPU, CPU or AUTO (Triton decides).",
    )


class ModelConfigOverride(ApiModel):
    """A partial Triton model configuration passed to Triton's load API as JSON."""

    model_config = with_rules(
        # Triton refuses such a config with a bare "failed to poll from model repository": say it here instead.
        cel(
            "!has(self.maxBatchSize) || !has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes)"
            " || self.dynamicBatching.preferredBatchSizes.all(size, size <= self.maxBatchSize)",
            "spec.models[].config.dynamicBatching.preferredBatchSizes must not exceed spec.models[].config.maxBatchSize; "
            "lower the preferred sizes or raise maxBatchSize",
            ".dynamicBatching.preferredBatchSizes",
        ),
    )

    max_batch_size: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Largest batch the model accepts; 0 disables batching.",
    )
    dynamic_batching: DynamicBatching | None = Field(
        default=None, description="Enables and tunes Triton's dynamic batcher."
    )
    instance_groups: list[InstanceGroup] | None = Field(
        default=None,
        max_length=16,
        description="Model instances to run, and where.",
    )


_MODEL_NAME_MESSAGE = (
    "spec.models[].name must be the name of a directory at the top of the model repository: letters, digits, "
    "'_', '.' and '-', not starting with '.' or '-', and no '/'"
)


class ModelSpec(ApiModel):
    """A model Triton loads when spec.models is set (explicit model control)."""

    name: Annotated[str, matching(MODEL_NAME_RE, _MODEL_NAME_MESSAGE)] = Field(
        min_length=1,
        max_length=253,
        description="Model name: a directory in the model repository.",
        json_schema_extra={"x-kubernetes-validations": [cel(f"self.matches(r'{MODEL_NAME_RE}')", _MODEL_NAME_MESSAGE)]},
    )
    config: ModelConfigOverride | None = Field(
        default=None,
        description="Overrides of the model's config.pbtxt, passed to Triton's load API.",
    )


class EnvVar(ApiModel):
    """An environment variable for the Triton container (the core/v1 EnvVar shape)."""

    name: str = Field(min_length=1, max_length=253, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class ResourceRequirements(ApiModel):
    """CPU, memory and other resources for the Triton container."""

    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=32, description="Minimum resources the scheduler reserves, e.g. {cpu: 4, memory: 16Gi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None,
        max_length=32,
        description="Maximum resources. GPUs come from spec.gpu, not from here.",
    )


class PullPolicy(StrEnum):
    """When the kubelet pulls the Triton image."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class TritonSpec(ApiModel):
    """The Triton Inference Server container."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description=(
            f"Triton image. Default: the operator's --default-triton-image, which defaults to {DEFAULT_TRITON_IMAGE} "
            "(platform teams point it at a mirror)."
        ),
    )
    image_pull_policy: PullPolicy | None = Field(
        default=None,
        description="Always, IfNotPresent or Never. Default: Kubernetes' own (IfNotPresent for a pinned tag).",
    )
    image_pull_secrets: list[SecretReference] | None = Field(
        default=None, description="Secrets for pulling the image from a private registry."
    )
    args: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None,
        max_length=64,
        description=(
            "Extra tritonserver flags, e.g. --log-verbose=1. The operator owns "
            f"{_RESERVED_FLAGS_TEXT}; set those through spec.modelRepository and spec.models instead."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.all(a, !a.matches(r'{RESERVED_FLAGS_RE}'))",
                    f"spec.triton.args must not contain {_RESERVED_FLAGS_TEXT} (nor abbreviations of them, which "
                    "tritonserver accepts too): the operator sets them. Use "
                    "spec.modelRepository.uri for the repository and spec.models for explicit model control",
                )
            ]
        },
    )
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=128,
        description="Extra environment variables for the Triton container.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory requests and limits for the Triton container."
    )
    startup_timeout_seconds: int = Field(
        default=900,
        ge=30,
        le=7200,
        description=(
            "How long Triton may take to load its models before the pod is restarted (the startupProbe's budget). "
            "Large GPU models take minutes. Default 900."
        ),
    )


_GPU_RESOURCE_MESSAGE = (
    "spec.gpu.resourceName must be nvidia.com/gpu or a MIG slice such as nvidia.com/mig-1g.10gb (the NVIDIA "
    "device plugin's resource names); leave it out for whole GPUs"
)


class GPUSpec(ApiModel):
    """GPUs per replica and where to find them."""

    count: int = Field(default=1, ge=0, le=64, description="GPUs per replica; 0 runs Triton on CPU only.")
    product: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description=(
            f"GPU model, matched against the GPU Feature Discovery node label {GPU_PRODUCT_LABEL}, "
            "e.g. NVIDIA-A100-SXM4-80GB."
        ),
    )
    resource_name: Annotated[str, matching(GPU_RESOURCE_RE, _GPU_RESOURCE_MESSAGE)] = Field(
        default=DEFAULT_GPU_RESOURCE,
        max_length=253,
        description=(
            "Extended resource to request: nvidia.com/gpu, or a MIG slice such as nvidia.com/mig-1g.10gb. "
            "Default nvidia.com/gpu."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [cel(f"self.matches(r'{GPU_RESOURCE_RE}')", _GPU_RESOURCE_MESSAGE)]
        },
    )


class Toleration(ApiModel):
    """A core/v1 Toleration."""

    # The pod API's own toleration rules, so a mistake is rejected here rather than by the Deployment.
    model_config = with_rules(
        cel(
            "(has(self.key) && size(self.key) > 0) || (has(self.operator) && self.operator == 'Exists')",
            "spec.tolerations[].operator must be Exists when key is empty (tolerating every taint); set key "
            "to the taint's key to match one taint",
            ".operator",
        ),
        cel(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || size(self.value) == 0",
            "spec.tolerations[].value must be empty when operator is Exists; remove value, or use operator "
            "Equal to match that value",
            ".value",
        ),
        cel(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "spec.tolerations[].tolerationSeconds applies only to effect NoExecute; set effect: NoExecute or "
            "remove tolerationSeconds",
            ".tolerationSeconds",
        ),
    )

    key: str | None = Field(
        default=None, max_length=317, description="Taint key; empty with operator Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default Equal).")
    value: str | None = Field(default=None, max_length=63, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class StabilizationPolicy(ApiModel):
    """How cautiously to scale in one direction."""

    stabilization_window_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Scale only to the most conservative recommendation seen over this many seconds.",
    )


class AutoscalingEngine(StrEnum):
    """Which component turns queue latency into replicas."""

    OPERATOR = "Operator"
    HPA = "HPA"


class MetricsSourceType(StrEnum):
    """Where queue-latency metrics are read from."""

    PODS = "Pods"
    PROMETHEUS = "Prometheus"


_PROMETHEUS_URL_MESSAGE = (
    "spec.autoscaling.prometheus.url must be the http:// or https:// base URL of the Prometheus HTTP API, "
    "such as http://prometheus.monitoring:9090"
)


class PrometheusSource(ApiModel):
    """A Prometheus that scrapes the Triton pods."""

    url: Annotated[str, matching(PROMETHEUS_URL_RE, _PROMETHEUS_URL_MESSAGE)] = Field(
        max_length=2048,
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
        json_schema_extra={
            "x-kubernetes-validations": [cel(f"self.matches(r'{PROMETHEUS_URL_RE}')", _PROMETHEUS_URL_MESSAGE)]
        },
    )


class AutoscalingSpec(ApiModel):
    """Replicas driven by Triton's queue latency."""

    model_config = with_rules(
        cel(
            "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
            ".minReplicas",
        ),
        cel(
            "!has(self.metricsSource) || self.metricsSource != 'Prometheus' || has(self.prometheus)",
            "spec.autoscaling.prometheus.url is required when spec.autoscaling.metricsSource is Prometheus",
            ".metricsSource",
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas. Default 1.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas; at least minReplicas. Required.")
    target_queue_latency_milliseconds: int = Field(
        default=50,
        ge=1,
        le=600_000,
        description="Request-weighted queue time per request to hold replicas at, in milliseconds. Default 50.",
    )
    scale_up: StabilizationPolicy | None = Field(default=None, description="Scale-up stabilization.")
    scale_down: StabilizationPolicy | None = Field(default=None, description="Scale-down stabilization.")
    engine: AutoscalingEngine = Field(
        default=AutoscalingEngine.OPERATOR,
        description="Operator (default): the operator's built-in autoscaler. HPA: an autoscaling/v2 "
        "HorizontalPodAutoscaler on a custom metric served by prometheus-adapter.",
    )
    metrics_source: MetricsSourceType = Field(
        default=MetricsSourceType.PODS,
        description="Pods (default): scrape each ready pod's :8002/metrics. Prometheus: query spec.autoscaling.prometheus.",
    )
    prometheus: PrometheusSource | None = Field(
        default=None, description="The Prometheus to query when metricsSource is Prometheus."
    )


class DisruptionBudget(ApiModel):
    """The PodDisruptionBudget created when more than one replica may run."""

    model_config = with_rules(
        cel(
            "!(has(self.maxUnavailable) && has(self.minAvailable))",
            "spec.disruptionBudget: set either maxUnavailable or minAvailable, not both",
        ),
        _budget_rule("maxUnavailable"),
        _budget_rule("minAvailable"),
    )

    enabled: bool = Field(default=True, description="Create the PodDisruptionBudget. Default true.")
    max_unavailable: ReplicasOrPercent | None = Field(
        default=None,
        description="Replicas (or a percentage such as 25%) that may be down for voluntary disruptions. Default 1.",
    )
    min_available: ReplicasOrPercent | None = Field(
        default=None, description="Replicas (or a percentage) that must stay up during voluntary disruptions."
    )


class InferenceServiceSpec(ApiModel):
    """The desired Triton fleet."""

    model_config = with_rules(
        cel(
            "!has(self.gpu) || !has(self.gpu.product) || !has(self.gpu.count) || self.gpu.count > 0",
            "spec.gpu.product needs spec.gpu.count of at least 1; remove spec.gpu.product for a CPU-only service",
            ".gpu.product",
        ),
        cel(
            "!has(self.gpu) || !has(self.gpu.product) || !has(self.nodeSelector) || "
            f"!('{GPU_PRODUCT_LABEL}' in self.nodeSelector) || "
            f"self.nodeSelector['{GPU_PRODUCT_LABEL}'] == self.gpu.product",
            f"spec.nodeSelector['{GPU_PRODUCT_LABEL}'] conflicts with spec.gpu.product; set the product in "
            "spec.gpu.product only",
            ".nodeSelector",
        ),
        cel(
            "!has(self.triton) || !has(self.triton.resources) || !has(self.triton.resources.limits) || "
            "!self.triton.resources.limits.exists(k, k == 'nvidia.com/gpu' || k.startsWith('nvidia.com/mig-'))",
            "spec.triton.resources.limits must not request GPUs; use spec.gpu.count and spec.gpu.resourceName",
            ".triton.resources.limits",
        ),
    )

    model_repository: ModelRepository = Field(description="Where Triton reads models from. Required.")
    models: Annotated[list[ModelSpec] | None, AfterValidator(unique_model_names)] = Field(
        default=None,
        max_length=256,
        description=(
            "Models to serve. When set, Triton runs with --model-control-mode=explicit and the operator loads "
            "exactly these through Triton's model-control API on every replica: adding, removing or reconfiguring "
            "a model changes the running pods in place, without a restart or rollout. When unset, Triton loads "
            "every model in the repository at startup."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    triton: TritonSpec = Field(default_factory=TritonSpec, description="The Triton container.")
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPUs per replica. Default: one nvidia.com/gpu.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas when spec.autoscaling is unset; the target of `kubectl scale`. Default 1.",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale replicas on Triton's queue latency. When set, spec.replicas is ignored."
    )
    disruption_budget: DisruptionBudget | None = Field(
        default=None,
        description="The PodDisruptionBudget, created when more than one replica may run. Default maxUnavailable 1.",
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=64, description="Node labels the pods require, merged with the GPU product label."
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=64,
        description="Taints the pods tolerate, beside the nvidia.com/gpu taint added for GPU pods."
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity for the pods (nodeAffinity, podAffinity, podAntiAffinity).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        default=None,
        description="core/v1 TopologySpreadConstraints for the pods.",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods.")
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount the pods run as (e.g. for cloud workload identity)."
    )

    @property
    def autoscaled(self) -> bool:
        """Whether something other than spec.replicas owns the replica count."""
        return self.autoscaling is not None

    @property
    def max_possible_replicas(self) -> int:
        """The most replicas that may run, which decides whether a disruption budget makes sense."""
        return self.autoscaling.max_replicas if self.autoscaling else self.replicas


# ---- status ----


class Condition(ApiModel):
    """A metav1.Condition. Every condition type here is True when the service is healthy."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: str = Field(description="True, False or Unknown.", json_schema_extra={"enum": ["True", "False", "Unknown"]})
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="What happened, in words a user can act on.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="The spec generation this describes.")


class Phase(StrEnum):
    """Where the service is in its life, for humans; conditions carry the detail."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    LOADING = "Loading"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class ModelStatus(ApiModel):
    """One model's state across the replicas."""

    name: str = Field(description="Model name.")
    version: str | None = Field(default=None, description="Loaded version.")
    state: str = Field(description="READY, LOADING, UNAVAILABLE, DEGRADED (ready on some replicas only) or UNKNOWN.")
    reason: str | None = Field(default=None, description="Why the model is not ready, in Triton's words.")


class AutoscalerStatus(ApiModel):
    """The autoscaler's last decision and its inputs."""

    desired_replicas: int | None = Field(default=None, description="Replicas the autoscaler wants.")
    queue_latency_milliseconds: float | None = Field(
        default=None, description="Request-weighted queue latency across ready replicas, in milliseconds."
    )
    last_scale_time: str | None = Field(default=None, description="When replicas last changed (RFC 3339).")
    reason: str | None = Field(default=None, description="Why the autoscaler decided as it did.")


class InferenceServiceStatus(ApiModel):
    """What the operator observed."""

    observed_generation: int | None = Field(default=None, description="The spec generation this status describes.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions, all True when healthy: Ready, Reconciled, PodsScheduled, Available, ModelsReady.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    phase: Phase | None = Field(default=None, description="Pending, Scheduling, Loading, Ready, Degraded or Failed.")
    replicas: int | None = Field(default=None, description="Pods of the current Deployment (the scale subresource's status).")
    ready_replicas: int | None = Field(default=None, description="Pods whose Triton reports ready.")
    selector: str | None = Field(default=None, description="Label selector of the pods (the scale subresource's selector).")
    url: str | None = Field(default=None, description="In-cluster HTTP endpoint (KServe v2 protocol).")
    grpc_url: str | None = Field(default=None, description="In-cluster gRPC endpoint.")
    models: list[ModelStatus] | None = Field(
        default=None, description="Per-model state across the replicas, from each replica's Triton model index."
    )
    models_ready: str | None = Field(
        default=None, description="Models READY on every replica that answered, of those wanted, e.g. 2/3."
    )
    autoscaler: AutoscalerStatus | None = Field(default=None, description="The autoscaler's last decision.")


class Metadata(BaseModel):
    """The parts of ObjectMeta the operator reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)


class InferenceService(BaseModel):
    """A whole InferenceService object as the operator reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: Metadata
    spec: InferenceServiceSpec
