"""The Helm chart with a real helm against a real API server: lint; value sets rendered and dry-run on the server;
bad values refused by the schema; install, upgrade (CRD included), uninstall keeping the CRD; and the RBAC proof,
the real operator run on this machine under the chart's ServiceAccount token, the API server's audit log the witness.

The module runs its own control plane instead of the session's, for three reasons:
- its audit policy also records the requests of ServiceAccounts in the operator's namespace (the session cluster's
  records only the user ``triton-operator``), so "no 403" and "every granted permission used" are read from it;
- its API server runs the OwnerReferencesPermissionEnforcement admission plugin, as OpenShift does, so the rule
  for ``inferenceservices/finalizers`` is needed and exercised;
- no other operator runs there (the session's serves every namespace as system:masters): the phases reached are
  this ServiceAccount's work alone, and helm may own the CRD.
It starts in about 5 s. ServiceMonitors are validated against a minimal ServiceMonitor CRD installed here: the
upstream schema's subset for the fields the chart sets, with its types and duration pattern, so the server's strict
field validation catches a misspelt or mistyped field (prometheus-operator itself is not available here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.cluster.helpers import DEPLOYMENT, ISVC, PDB, POD, SERVICE, Kube, isvc_manifest
from tests.helm import CHART, OPERATOR_NS, RELEASE, REPO, Chart, assert_hardened, helm_path
from tests.polling import wait_for
from tests.prerequisites import missing
from triton_operator.adapters.kube import KubeAdapter, load_kube_config
from triton_operator.api.v1alpha1 import DEFAULT_TRITON_IMAGE
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.processes import free_ports
from triton_operator.policy.readiness_gate import GATE, GateCondition
from triton_operator.resources.deployment import CONTAINER_NAME
from triton_operator.testing.metrics import scrape_sums

CRD_FILE = "inferenceservices.serving.triton-operator.dev.yaml"
CRD_NAME = "inferenceservices.serving.triton-operator.dev"
KOPF_CRDS = CHART / "crds" / "kopf-peering.yaml"
KOPF_CRD_NAMES = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
SA_USER = f"system:serviceaccount:{OPERATOR_NS}:{RELEASE}"
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}

#: The upstream duration pattern of prometheus-operator's monitoring.coreos.com/v1 Duration.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: servicemonitors.monitoring.coreos.com}}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [selector]
            properties:
              namespaceSelector:
                type: object
                properties:
                  any: {{type: boolean}}
                  matchNames: {{type: array, items: {{type: string}}}}
              selector:
                type: object
                properties:
                  matchLabels: {{type: object, additionalProperties: {{type: string}}}}
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {{type: string}}
                    path: {{type: string}}
                    interval: {{type: string, pattern: '{DURATION}'}}
                    scrapeTimeout: {{type: string, pattern: '{DURATION}'}}
"""


# ---- the module's cluster -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chart]:
    helm = helm_path()
    if not os.access(helm, os.X_OK):
        missing(f"no helm at {helm}: build it with hack/build-helm.sh (make prereqs does)")
    local = LocalCluster(
        name="helm-chart",
        admission_plugins=("OwnerReferencesPermissionEnforcement",),
        audited_groups=(f"system:serviceaccounts:{OPERATOR_NS}",),
    )
    local.down()  # always fresh: a cluster kept from an earlier run holds that run's releases
    local.up()
    tools = Chart(helm, local, tmp_path_factory.mktemp("helm-home"))
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS, "labels": RESTRICTED}},
        *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in ("apps", "team-a", "team-b")),
    ]
    tools.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all([*namespaces, yaml.safe_load(SERVICE_MONITOR_CRD)]))
    tools.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    yield tools
    if not os.environ.get("TRITON_OPERATOR_KEEP_CLUSTER"):
        local.down()


@pytest.fixture(scope="module")
def admin(chart: Chart) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(chart.cluster.kubeconfig), client_configuration=configuration)
    return k8s.ApiClient(configuration)


def find(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of every (Cluster)Role rendered."""
    return {
        (group, resource, verb)
        for role in docs
        if role["kind"] in ("Role", "ClusterRole")
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# ---- offline: lint, rendering, the values schema --------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(chart: Chart, strict: bool) -> None:
    for values in ([], ["--set", "watchNamespaces={team-a,team-b}", "--set", "serviceMonitor.enabled=true"]):
        done = chart.helm("lint", str(CHART), *(["--strict"] if strict else []), *values)
        assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def check_defaults(docs: list[dict[str, Any]]) -> None:
    assert sorted(d["kind"] for d in docs) == sorted(
        ["CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]
    )
    crd = find(docs, "CustomResourceDefinition")[0]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # fromYaml/toYaml in the template change nothing but the metadata the chart adds
    assert crd["spec"] == yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())["spec"]
    assert operator_container(docs)["args"] == [
        "run",
        f"--default-triton-image={DEFAULT_TRITON_IMAGE}",
        "--metrics-port=8080",
        "--health-port=8081",
        "--workers=8",
        "--api-concurrency=8",
        "--autoscale-interval=2",
    ]
    assert find(docs, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}  # never two operators at once
    service, pod = find(docs, "Service")[0]["spec"], find(docs, "Deployment")[0]["spec"]["template"]
    assert service["ports"][0]["name"] == "http-metrics"
    assert service["selector"].items() <= pod["metadata"]["labels"].items()  # the Service reaches the operator pod
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"} <= set(labels)


def check_watch_namespaces(docs: list[dict[str, Any]]) -> None:
    assert [r["metadata"]["namespace"] for r in find(docs, "Role")] == ["team-a", "team-b"]
    assert [b["subjects"] for b in find(docs, "RoleBinding")] == [[{"kind": "ServiceAccount", "name": RELEASE, "namespace": OPERATOR_NS}]] * 2
    # The one ClusterRole holds only cluster-scoped resources: nothing in another namespace is reachable.
    assert {resource for _, resource, _ in granted(find(docs, "ClusterRole"))} == {"nodes", "customresourcedefinitions", "namespaces"}
    assert operator_container(docs)["args"][1:3] == ["--namespace=team-a", "--namespace=team-b"]


def check_no_crds(docs: list[dict[str, Any]]) -> None:
    assert not find(docs, "CustomResourceDefinition")


def check_crds_not_kept(docs: list[dict[str, Any]]) -> None:
    assert "annotations" not in find(docs, "CustomResourceDefinition")[0]["metadata"]


def check_service_monitor(docs: list[dict[str, Any]]) -> None:
    monitor, service = find(docs, "ServiceMonitor")[0], find(docs, "Service")[0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [OPERATOR_NS]}


SCHEDULING = {
    "resources": {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux", "node-role.kubernetes.io/infra": ""},
    "tolerations": [{"key": "node-role.kubernetes.io/infra", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}
            ]
        }
    },
    "priorityClassName": "operators",
    "podAnnotations": {"example.com/team": "ml-platform"},
    "image": {"repository": "registry.example/triton-operator", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
}


def check_scheduling(docs: list[dict[str, Any]]) -> None:
    spec = find(docs, "Deployment")[0]["spec"]["template"]
    pod = spec["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == SCHEDULING[key], key
    assert spec["metadata"]["annotations"] == SCHEDULING["podAnnotations"]
    container = pod["containers"][0]
    assert container["resources"] == SCHEDULING["resources"]
    assert (container["image"], container["imagePullPolicy"]) == (f"registry.example/triton-operator@sha256:{'a' * 64}", "Always")


PEERING_RULES = {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("list", "watch", "get", "patch")}


def check_peering(docs: list[dict[str, Any]]) -> None:
    (peering,) = find(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == RELEASE
    deployment = find(docs, "Deployment")[0]["spec"]
    assert deployment["replicas"] == 2
    # a new pod waits behind the working one, which hands over when it exits: a rolling update is safe
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert operator_container(docs)["args"][-2:] == [f"--peering={RELEASE}", "--peering-lifetime=60"]
    assert granted(docs) - granted(VALUE_SETS_RENDERED["defaults"]) == PEERING_RULES
    # get and patch only of its own peering object; list and watch cannot be narrowed by name for kopf's watch
    (named,) = [r for r in find(docs, "ClusterRole")[0]["rules"] if r.get("resourceNames")]
    assert (named["resourceNames"], named["verbs"]) == ([RELEASE], ["get", "patch"])


def check_peering_namespaced(docs: list[dict[str, Any]]) -> None:
    peerings = find(docs, "KopfPeering")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings] == [("team-a", "ha"), ("team-b", "ha")]
    assert not find(docs, "ClusterKopfPeering")
    assert find(docs, "Deployment")[0]["spec"]["replicas"] == 1  # peering asked for with one replica: rolling upgrades
    assert find(docs, "Deployment")[0]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert operator_container(docs)["args"][-2:] == ["--peering=ha", "--peering-lifetime=15"]
    for role in find(docs, "Role"):
        assert {("kopf.dev", "kopfpeerings", v) for v in ("list", "watch", "get", "patch")} <= granted([role])
    assert not {g for g in granted(find(docs, "ClusterRole")) if g[0] == "kopf.dev"}


#: Rendered once per value set, for checks that compare with another set.
VALUE_SETS_RENDERED: dict[str, list[dict[str, Any]]] = {}

VALUE_SETS: dict[str, tuple[dict[str, Any], Callable[[list[dict[str, Any]]], None]]] = {
    "defaults": ({}, check_defaults),
    "watch-namespaces": ({"watchNamespaces": ["team-a", "team-b"]}, check_watch_namespaces),
    "crds-not-installed": ({"crds": {"install": False}}, check_no_crds),
    "crds-not-kept": ({"crds": {"keep": False}}, check_crds_not_kept),
    "service-monitor": ({"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}, check_service_monitor),
    "scheduling": (SCHEDULING, check_scheduling),
    "peering": ({"replicaCount": 2}, check_peering),
    "peering-namespaced": (
        {"peering": {"enabled": True, "name": "ha", "lifetime": 15}, "watchNamespaces": ["team-a", "team-b"]},
        check_peering_namespaced,
    ),
}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_a_value_set_renders_and_passes_a_server_dry_run(chart: Chart, name: str) -> None:
    values, check = VALUE_SETS[name]
    VALUE_SETS_RENDERED.setdefault("defaults", chart.template({}))
    rendered = chart.render(values)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    check(docs)
    assert_hardened(find(docs, "Deployment")[0]["spec"]["template"]["spec"])
    if find(docs, "ClusterKopfPeering") or find(docs, "KopfPeering"):  # their kinds come from the chart's crds/
        install_kopf_crds(chart)
    # The real API server validates every object (strict field validation: an unknown or mistyped field fails),
    # and PodSecurity in warn=restricted mode in the operator's namespace would warn about the pod template.
    applied = chart.kubectl("apply", "--dry-run=server", "-f", "-", input_text=rendered)
    assert "Warning" not in applied.stderr, applied.stderr
    assert len(applied.stdout.splitlines()) == len(docs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 0"),
        (["--set", "peering.lifetime=5"], "at '/peering/lifetime': minimum: got 5, want 10"),
        (["--set", "peering.name=HA_peers"], "at '/peering/name': 'HA_peers' does not match pattern"),
        (["--set", "replicas=1"], "additional properties 'replicas' not allowed"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
        (["--set", "image.tgs=1.0"], "at '/image': additional properties 'tgs' not allowed"),
        (["--set", "watchNamespaces={Team_A}"], "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
        (["--set", "serviceMonitor.interval=30"], "at '/serviceMonitor/interval': got number, want string"),
        (["--set", "tolerations[0].operator=Equals"], "at '/tolerations/0/operator': value must be one of 'Exists', 'Equal'"),
        (
            ["--set", "serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
            "serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ],
    ids=["replicas-not-a-number", "negative-replicas", "peering-lifetime-too-short", "bad-peering-name", "unknown-top-level-key", "bogus-pull-policy", "unknown-nested-key",
         "bad-namespace-name", "interval-not-a-duration", "bogus-toleration", "monitor-without-service"],
)
def test_bad_values_are_refused_with_a_message_naming_the_value(chart: Chart, args: list[str], message: str) -> None:
    done = chart.helm("template", RELEASE, str(CHART), *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_helm_install_refuses_bad_values_before_touching_the_cluster(chart: Chart) -> None:
    done = chart.helm("install", "refused", str(CHART), "-n", OPERATOR_NS, "--set", "peering.lifetime=1", check=False)
    assert "values don't meet the specifications of the schema" in done.stderr
    assert "refused" not in chart.helm("list", "-A", "-q").stdout


# ---- install, upgrade, uninstall ---------------------------------------------------------------------------------


def install_kopf_crds(chart: Chart) -> None:
    """kopf's peering CRDs, as helm's crds/ step installs them before a release's templates."""
    chart.kubectl("apply", "-f", str(KOPF_CRDS))
    chart.kubectl("wait", "--for=condition=Established", *(f"crd/{name}" for name in KOPF_CRD_NAMES))


def test_install_upgrade_and_uninstall_keeping_the_crd(chart: Chart, tmp_path: Path) -> None:
    chart.kubectl("delete", "-f", str(KOPF_CRDS), "--ignore-not-found")
    chart.helm("install", RELEASE, str(CHART), "-n", OPERATOR_NS)
    assert all(chart.exists("crd", name) for name in KOPF_CRD_NAMES)  # from the chart's crds/, before the templates
    deployment = chart.get("-n", OPERATOR_NS, "deployment", RELEASE)
    assert_hardened(deployment["spec"]["template"]["spec"])
    # The namespace enforces the restricted Pod Security Standard: the ReplicaSet's pod exists only if it complies.
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    wait_for("the operator pod, admitted as restricted", lambda: chart.get("-n", OPERATOR_NS, "pods", "-l", selector)["items"], timeout=30)
    assert chart.get("-n", OPERATOR_NS, "serviceaccount", RELEASE)
    assert chart.get("clusterrolebinding", RELEASE)["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": OPERATOR_NS}]
    assert chart.get("crd", CRD_NAME)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # Upgrade with a changed value and a changed CRD (a copy of the chart whose CRD has a new description): Helm
    # never upgrades a chart's crds/ directory, this chart templates its CRD, so the upgrade reaches it.
    upgraded = tmp_path / "triton-operator"
    shutil.copytree(CHART, upgraded)
    crd_copy = upgraded / "files" / CRD_FILE
    crd = yaml.safe_load(crd_copy.read_text())
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "upgraded by helm"
    crd_copy.write_text(yaml.safe_dump(crd))
    chart.helm("upgrade", RELEASE, str(upgraded), "-n", OPERATOR_NS, "--reuse-values", "--set", "defaultTritonImage=registry.example/tritonserver:25.10-py3")
    args = chart.get("-n", OPERATOR_NS, "deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--default-triton-image=registry.example/tritonserver:25.10-py3" in args
    live_crd = chart.get("crd", CRD_NAME)
    assert live_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == "upgraded by helm"
    assert json.loads(chart.helm("history", RELEASE, "-n", OPERATOR_NS, "-o", "json").stdout)[-1]["revision"] == 2

    done = chart.helm("uninstall", RELEASE, "-n", OPERATOR_NS)
    assert f"[CustomResourceDefinition] {CRD_NAME}" in done.stdout  # "These resources were kept due to the resource policy"
    assert chart.exists("crd", CRD_NAME)
    assert all(chart.exists("crd", name) for name in KOPF_CRD_NAMES)  # Helm never deletes crds/: shared by kopf operators
    for kind in ("deployment", "serviceaccount", "service"):
        assert not chart.exists("-n", OPERATOR_NS, kind, RELEASE if kind != "service" else f"{RELEASE}-metrics")
    assert not chart.exists("clusterrole", RELEASE)


# ---- the RBAC proof: the real operator under the chart's ServiceAccount -------------------------------------------


#: A child as the operator makes them: owned by an InferenceService, with blockOwnerDeletion.
OWNED_PROBE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "owner-probe",
        "ownerReferences": [
            {"apiVersion": ISVC[0], "kind": ISVC[1], "name": "probe", "uid": "00000000-0000-0000-0000-000000000000",
             "controller": True, "blockOwnerDeletion": True}
        ],
    },
    "spec": {"ports": [{"port": 80}]},
}


def admission_knows_the_kind(chart: Chart, kubeconfig: Path, namespace: str) -> bool:
    """OwnerReferencesPermissionEnforcement resolves an owner's kind with the API server's discovery cache, which
    may predate the CRD for up to 30 s (until its periodic reset): until then it refuses (403) every child with
    blockOwnerDeletion. The operator retries through it; the proof waits it out, so that every 403 it counts is an
    RBAC refusal. Asked with the operator's token (the plugin lets cluster admins through), as a dry run."""
    probe = chart.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-f", "-", input_text=json.dumps(OWNED_PROBE), kubeconfig=kubeconfig, check=False
    )
    return probe.returncode == 0


@contextlib.contextmanager
def operator_running(chart: Chart, kubeconfig: Path, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """The command line of the installed Deployment's container, run on this machine with the token's kubeconfig
    (the console script `triton-operator` from this venv: what the image must put on PATH), plus ``extra`` flags
    (later flags win). Yields the process."""
    container = chart.get("-n", OPERATOR_NS, "deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]
    argv = [str(Path(sys.executable).parent / container["command"][0]), *container["args"], f"--kubeconfig={kubeconfig}", *extra]
    namespace = next((a.split("=")[1] for a in argv if a.startswith("--namespace=")), "default")
    wait_for("admission to know InferenceServices", lambda: admission_knows_the_kind(chart, kubeconfig, namespace), timeout=40)
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("the operator started", lambda: process.poll() is None and "triton-operator started" in log.read_text(), timeout=30)
        yield process
    except AssertionError as failed:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise AssertionError(f"{failed}\n--- the operator's log ends:\n{tail}") from failed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def flag(process: subprocess.Popen[bytes], name: str) -> int:
    """The last value of an integer flag on the process's command line (later flags win, as argparse does)."""
    return int([a.split("=", 1)[1] for a in map(str, process.args) if a.startswith(f"--{name}=")][-1])  # type: ignore[union-attr]


def install_with_free_ports(chart: Chart, *values: str) -> None:
    """`helm upgrade --install` with the metrics and health ports free on this machine, where the test runs the
    Deployment's command line."""
    metrics, health = free_ports(2)
    chart.helm("upgrade", "--install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--set", f"metrics.port={metrics}", "--set", f"healthPort={health}", *values)


def service_account_requests(chart: Chart, start: int = 0) -> list[dict[str, Any]]:
    """The audit log's entries for the chart's ServiceAccount, from line ``start`` on."""
    lines = chart.cluster.audit_log.read_text().splitlines()[start:]
    return [e for line in lines if (e := json.loads(line))["user"]["username"] == SA_USER]


def exercised(entries: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) each request needed. Discovery (/api, /apis: non-resource URLs every
    authenticated user may read) needs no rule. A server-side apply that created its object (201) was authorized
    as a create too, and, under OwnerReferencesPermissionEnforcement, its ownerReference with blockOwnerDeletion
    as an update of the owner's finalizers."""
    used = set()
    for entry in entries:
        ref = entry.get("objectRef")
        if not ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, entry["verb"]))
        if entry["verb"] == "patch" and entry["responseStatus"]["code"] == 201 and not ref.get("subresource"):
            used.add((ref.get("apiGroup", ""), resource, "create"))
            used.add(("serving.triton-operator.dev", "inferenceservices/finalizers", "update"))
    return used


def the_operators(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests of the operator's code (kopf and the Kubernetes client), not the test's kubectl checks."""
    return [e for e in entries if not e.get("userAgent", "").startswith("kubectl")]


async def call_what_kwok_pods_cannot_trigger(kubeconfig: Path, namespace: str, pod: str) -> None:
    """The two calls that need a real Triton, made through the operator's own adapter with its token: opening the
    readiness gate (Triton loaded the models) and reading the previous container's log (Triton exited)."""
    kube = KubeAdapter(load_kube_config(str(kubeconfig)))
    try:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await kube.patch_pod_condition(namespace, pod, GateCondition("False", "RbacProof", "written by the test").as_condition(now))
        with pytest.raises(ApiException) as refused:
            await kube.read_previous_log(namespace, pod, CONTAINER_NAME)
        # Authorized: the API server went on to look for the (fake) node's kubelet, and found no address.
        assert refused.value.status == 500, refused.value
        assert "no preferred addresses" in str(refused.value.body)
    finally:
        kube.close()


def owner_uid(child: dict[str, Any] | None) -> str | None:
    return next((o["uid"] for o in (child or {}).get("metadata", {}).get("ownerReferences") or []), None)


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except OSError:
        return None


def refusals(entries: list[dict[str, Any]]) -> list[str]:
    """The requests the API server refused (403), as `verb resource namespace`."""
    return [
        f"{e['verb']} {(e.get('objectRef') or {}).get('resource', e['requestURI'])} {(e.get('objectRef') or {}).get('namespace', '')}"
        for e in entries
        if e["responseStatus"]["code"] == 403
    ]


def wait_phase(kube: Kube, name: str, wanted: str, also: Callable[[dict[str, Any]], Any] = bool) -> dict[str, Any]:
    """Until the InferenceService is in this phase and ``also`` holds; a timeout shows its status."""
    def probe() -> dict[str, Any] | None:
        status = kube.status(name)
        return status if status.get("phase") == wanted and also(status) else None

    try:
        return wait_for(f"{name} in phase {wanted}", probe, timeout=30)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nstatus of {name}: {json.dumps(kube.status(name), indent=1)}") from failed


def wait_rbac_in_effect(chart: Chart, kubeconfig: Path, *checks: tuple[str, ...]) -> None:
    """Until the API server's authorizer has caught up with the bindings helm just wrote (its cache lags them)."""
    wait_for("the chart's RBAC in effect", lambda: all(chart.can_i(kubeconfig, *c) for c in checks), timeout=10)


def test_rbac_cluster_wide_is_sufficient_and_every_rule_is_used(chart: Chart, admin: k8s.ApiClient, tmp_path: Path) -> None:
    install_with_free_ports(chart)  # the same release name adopts the CRD the last uninstall kept
    kubeconfig = chart.token_kubeconfig(tmp_path / "kubeconfig")
    wait_rbac_in_effect(chart, kubeconfig, ("watch", "inferenceservices", "--all-namespaces"))
    kube = Kube(admin, chart.cluster, "apps")
    with operator_running(chart, kubeconfig, tmp_path / "operator.log") as operator:
        # the chart's liveness and readiness probes ask exactly this (kopf serves it shortly after startup)
        wait_for("kopf's /healthz", lambda: healthz(flag(operator, "health-port")) == 200, timeout=10)
        kube.create(isvc_manifest("autoscaled", gpu={"count": 1}, autoscaling={"minReplicas": 2, "maxReplicas": 4}))
        kube.create(isvc_manifest("models", gpu={"count": 0}, replicas=2, models=[{"name": "resnet50"}], disruptionBudget={"maxUnavailable": 1}))
        kube.create(isvc_manifest("hpa", gpu={"count": 1}, autoscaling={"minReplicas": 1, "maxReplicas": 3, "engine": "HPA"}))
        kube.create(isvc_manifest("unschedulable", gpu={"count": 1, "product": "NVIDIA-B200"}))

        # deployments/scale: the built-in autoscaler raises the Deployment to minReplicas
        wait_phase(kube, "autoscaled", "Ready", lambda status: status["readyReplicas"] == 2)
        wait_phase(kube, "models", "Ready", lambda _: kube.get(PDB, "models"))
        wait_phase(kube, "hpa", "Ready", lambda _: kube.get(HPA, "hpa"))
        # nodes: the reason names the GPU product no node has
        status = wait_phase(kube, "unschedulable", "Scheduling")
        assert "NVIDIA-B200" in kube.condition("unschedulable", "PodsScheduled")["message"], status

        # delete: a budget and an HPA the spec no longer wants
        kube.patch(ISVC, "models", {"spec": {"replicas": 1}})
        kube.patch(ISVC, "hpa", {"spec": {"autoscaling": {"engine": "Operator"}}})
        wait_for("budget and HPA deleted", lambda: kube.get(PDB, "models") is None and kube.get(HPA, "hpa") is None, timeout=30)

        # Adoption: deleted with --cascade=orphan and created anew, an InferenceService gets its Deployment and
        # Service back; the apply re-sets their ownerReference, which the admission plugin allows only to whoever
        # may delete them.
        kube.kubectl("delete", "inferenceservice", "hpa", "--cascade=orphan")
        wait_for("hpa deleted, its children orphaned", lambda: kube.get(ISVC, "hpa") is None)
        uid = kube.create(isvc_manifest("hpa", gpu={"count": 1}))["metadata"]["uid"]
        wait_for("children adopted", lambda: all(owner_uid(kube.get(kind, "hpa")) == uid for kind in (DEPLOYMENT, SERVICE)))

        pod = kube.list(POD, "serving.triton-operator.dev/inferenceservice=models")[0]["metadata"]["name"]
        asyncio.run(call_what_kwok_pods_cannot_trigger(kubeconfig, "apps", pod))
        gate = next(c for c in kube.get(POD, pod)["status"]["conditions"] if c["type"] == GATE)
        assert gate["reason"] == "RbacProof"
        assert kube.get(DEPLOYMENT, "autoscaled")["spec"]["replicas"] == 2

    entries = the_operators(service_account_requests(chart))
    assert refusals(entries) == []
    rules = granted(chart.template({}))
    # The adoption above needed delete on the Deployment and the Service; the audit log's metadata cannot show it
    # (the admission plugin asks the authorizer itself), the adoption's success does.
    used = exercised(entries) | {("apps", "deployments", "delete"), ("", "services", "delete")}
    assert used - rules == set(), "requests without a rule (they would have been refused)"
    assert rules - used == set(), "rules the operator never needed: not least privilege"

    # What the token must not do, asked of the API server (SelfSubjectAccessReview) with the token itself.
    assert chart.can_i(kubeconfig, "list", "nodes")  # the question works: this one is granted
    for denied in (
        ("get", "secrets", "-n", "apps"),
        ("get", "secrets", "-n", OPERATOR_NS),
        ("get", "configmaps", "-n", "apps"),
        ("create", "pods", "-n", "apps"),
        ("delete", "pods", "-n", "apps"),
        ("update", "deployments", "-n", "apps"),  # applies are patches; nothing replaces whole objects
        ("update", "inferenceservices", "-n", "apps"),  # it never writes a user's spec
        ("patch", "nodes"),
        ("create", "clusterrolebindings"),
    ):
        assert not chart.can_i(kubeconfig, *denied), denied
    # A refused request does show in the audit log as a 403 for this user: the "no 403" above can fail.
    start = len(chart.cluster.audit_log.read_text().splitlines())
    refused = chart.kubectl("-n", "apps", "get", "secrets", kubeconfig=kubeconfig, check=False)
    assert "Forbidden" in refused.stderr
    assert refusals(service_account_requests(chart, start)) == ["list secrets apps"]


def test_rbac_for_listed_namespaces_reaches_nothing_else(chart: Chart, admin: k8s.ApiClient, tmp_path: Path) -> None:
    install_with_free_ports(chart, "--set", "watchNamespaces={team-a}")
    assert not chart.exists("clusterrole", RELEASE)  # the cluster-wide role went with the upgrade
    kubeconfig = chart.token_kubeconfig(tmp_path / "kubeconfig")
    wait_rbac_in_effect(chart, kubeconfig, ("watch", "inferenceservices", "-n", "team-a"), ("watch", "namespaces"))
    start = len(chart.cluster.audit_log.read_text().splitlines())
    team_a, team_b = Kube(admin, chart.cluster, "team-a"), Kube(admin, chart.cluster, "team-b")
    with operator_running(chart, kubeconfig, tmp_path / "operator.log"):
        team_b.create(isvc_manifest("elsewhere", gpu={"count": 1}))
        team_a.create(isvc_manifest("served", gpu={"count": 1}, replicas=2))
        wait_phase(team_a, "served", "Ready", lambda _: team_a.get(PDB, "served"))
    assert team_b.status("elsewhere") == {}  # never seen: no status, no children
    assert team_b.get(DEPLOYMENT, "elsewhere") is None

    entries = the_operators(service_account_requests(chart, start))
    assert refusals(entries) == []
    assert exercised(entries) <= granted(chart.template({"watchNamespaces": ["team-a"]}))
    # kopf lists and watches namespace names to serve a listed namespace created later
    assert {("", "namespaces", "list"), ("", "namespaces", "watch")} <= exercised(entries)
    assert not [e for e in entries if (e.get("objectRef") or {}).get("namespace") not in (None, "team-a")]

    assert chart.can_i(kubeconfig, "create", "deployments", "-n", "team-a")
    for denied in (
        ("create", "deployments", "-n", "team-b"),
        ("list", "inferenceservices", "-n", "team-b"),
        ("list", "pods", "--all-namespaces"),
        ("get", "secrets", "-n", "team-a"),
    ):
        assert not chart.can_i(kubeconfig, *denied), denied


# ---- more than one replica: kopf peering ---------------------------------------------------------------------------


def metric(process: subprocess.Popen[bytes], name: str) -> float | None:
    """The sum of a metric's samples on the process's /metrics, or None while it does not answer."""
    sums = scrape_sums(f"http://127.0.0.1:{flag(process, 'metrics-port')}/metrics")
    return None if sums is None else sums.get(name, 0.0)


def working(process: subprocess.Popen[bytes]) -> bool:
    return metric(process, "triton_operator_working") == 1.0


def standing_by(log: Path) -> bool:
    return "standing by" in log.read_text()


def test_two_replicas_with_peering_one_works_and_the_other_takes_over(chart: Chart, admin: k8s.ApiClient, tmp_path: Path) -> None:
    install_with_free_ports(chart, "--set", "replicaCount=2", "--set", "peering.lifetime=10")
    kubeconfig = chart.token_kubeconfig(tmp_path / "kubeconfig")
    wait_rbac_in_effect(chart, kubeconfig, ("patch", f"clusterkopfpeerings/{RELEASE}"), ("watch", "clusterkopfpeerings"))
    start = len(chart.cluster.audit_log.read_text().splitlines())
    kube = Kube(admin, chart.cluster, "apps")
    ports = iter(free_ports(6))
    logs = [tmp_path / f"{name}.log" for name in ("a", "b", "c")]

    def run(log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        return operator_running(chart, kubeconfig, log, f"--metrics-port={next(ports)}", f"--health-port={next(ports)}")

    with run(logs[0]) as a:
        wait_for("the first replica to work", lambda: working(a), timeout=20)
        with run(logs[1]) as b:
            wait_for("the second replica to stand by", lambda: standing_by(logs[1]), timeout=20)
            kube.create(isvc_manifest("ha", gpu={"count": 1}, replicas=2))
            wait_phase(kube, "ha", "Ready", lambda _: kube.get(PDB, "ha"))
            assert not working(b)
            assert metric(b, "triton_operator_api_writes_total") == 0  # the standby wrote nothing of its own
            assert metric(b, "triton_operator_inferenceservices") == 0  # nor kept a copy that would go stale

            # A clean exit hands over at once: kopf removes the leaving replica's record.
            a.send_signal(signal.SIGTERM)
            a.wait(timeout=15)
            left = time.monotonic()
            wait_for("the standby to work", lambda: working(b), timeout=15)
            handover = time.monotonic() - left
            kube.delete(SERVICE, "ha")
            wait_for("the Service repaired by the new worker", lambda: kube.get(SERVICE, "ha"), timeout=30)

            # A crash: the younger replica waits until the dead one's record expires (peering.lifetime), then works.
            with run(logs[2]) as c:
                wait_for("the third replica to stand by", lambda: standing_by(logs[2]), timeout=20)
                b.kill()
                b.wait()
                crashed = time.monotonic()
                wait_for("the third replica to take over", lambda: working(c), timeout=30)
                takeover = time.monotonic() - crashed
                kube.delete(DEPLOYMENT, "ha")
                wait_for("the Deployment repaired after the takeover", lambda: kube.get(DEPLOYMENT, "ha"), timeout=30)
                wait_phase(kube, "ha", "Ready")
    print(f"\n[cluster tier] peering: clean handover {handover:.1f} s; takeover after a crash {takeover:.1f} s (lifetime 10 s)")

    entries = the_operators(service_account_requests(chart, start))
    assert refusals(entries) == []
    used = exercised(entries)
    assert used >= PEERING_RULES, "the peering rules are each needed"
    assert used <= granted(chart.template({"replicaCount": 2}))
