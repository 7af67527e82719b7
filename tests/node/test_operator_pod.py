"""The chart as a platform team uses it, on the real node: helm installs the operator's own image (built without
Docker, as operator/Dockerfile builds it) as a pod under the chart's ServiceAccount; that pod, not a process on
this machine, reconciles the quickstart InferenceService to Ready and real inference answers; helm upgrade replaces
the operator pod without touching the Triton fleet; helm uninstall removes the operator and leaves the models
serving.

The session's operator process serves every namespace, so it is stopped for this test and started again after it:
two operators would both reconcile the same InferenceService.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import DEPLOYMENT, POD, SERVICE, Kube
from tests.helm import CHART, OPERATOR_NS, RELEASE, REPO, Chart, assert_hardened, helm_path
from tests.node.conftest import node_operator_args
from tests.polling import wait_for
from tests.prerequisites import missing
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster import realnode as rn
from triton_operator.devcluster.inference import infer_identity, infer_identity_once_routed
from triton_operator.devmode import OperatorProcess
from triton_operator.testing.metrics import scrape_sums

OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"


@pytest.fixture
def chart(node_cluster: LocalCluster, tmp_path: Path) -> Chart:
    helm = helm_path()
    if not helm.is_file():
        missing(f"no helm at {helm}: build it with hack/build-helm.sh (make prereqs does)")
    return Chart(helm, node_cluster, tmp_path / "helm-home")


@pytest.fixture
def session_operator_stopped(node_operator: OperatorProcess, triton_image_name: str) -> Iterator[None]:
    node_operator.stop()  # returns once the process has exited
    try:
        yield
    finally:
        node_operator.start(extra_args=node_operator_args(triton_image_name))


def operator_pods(chart: Chart) -> list[dict[str, Any]]:
    pods = chart.get("-n", OPERATOR_NS, "pods", "-l", OPERATOR_SELECTOR)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def the_operator_pod(chart: Chart) -> dict[str, Any]:
    (pod,) = operator_pods(chart)
    return pod


def container_process(pod: dict[str, Any]) -> int:
    """The host PID of the operator container's main process (found by the container ID the kubelet reports)."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            if container_id in cgroup.read_text() and "triton-operator" in (cgroup.parent / "cmdline").read_text():
                return int(cgroup.parent.name)
        except OSError:  # the process ended while we looked
            continue
    raise AssertionError(f"no process of container {container_id} on this machine")


def assert_runs_hardened(pid: int) -> None:
    """What the kernel says about the running operator: uid 65532, no effective capability, no new privileges,
    a seccomp filter, and a read-only root filesystem."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    assert status["Uid"].split()[:2] == ["65532", "65532"], status["Uid"]
    assert int(status["CapEff"], 16) == 0, status["CapEff"]
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a filter: RuntimeDefault
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root


def http_text(url: str) -> str | None:
    """The body of a GET without any proxy, or None while it does not answer."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def wait_ready(kube: Kube, chart: Chart, name: str, timeout: float = 180) -> None:
    """``kubectl wait`` for Ready; on a timeout, the status and the operator pod's log say why."""
    done = kube.kubectl("wait", "--for=condition=Ready", f"tis/{name}", f"--timeout={timeout:.0f}s", check=False)
    if done.returncode != 0:
        log = chart.kubectl("-n", OPERATOR_NS, "logs", "-l", OPERATOR_SELECTOR, "--tail=40", check=False).stdout
        raise AssertionError(f"{name} not Ready: {done.stderr}\nstatus: {kube.status(name)}\noperator log:\n{log}")


@pytest.fixture
def chart_values(kube: Kube, operator_image_name: str, triton_image_name: str, session_operator_stopped: None) -> list[str]:
    """The chart's values on the real node: the locally built images, the test's namespace, the real node (with
    the session's operator stopped meanwhile)."""
    repository, tag = operator_image_name.rsplit(":", 1)
    return [
        *("--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never"),
        *("--set", f"defaultTritonImage={triton_image_name}", "--set", f"watchNamespaces={{{kube.namespace}}}"),
        *("--set-string", f"nodeSelector.{rn.REAL_NODE_LABEL[0].replace('.', chr(92) + '.')}={rn.REAL_NODE_LABEL[1]}"),
        # The session installed the CRD with kubectl; helm would refuse to adopt it (the cluster tier tests
        # crds.install).
        *("--set", "crds.install=false"),
    ]


def test_the_chart_runs_the_operator_as_a_pod_that_serves_the_quickstart(kube: Kube, chart: Chart, chart_values: list[str], operator_image_name: str) -> None:
    values = chart_values
    try:
        started = time.monotonic()
        installed = chart.helm("install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--create-namespace", *values, "--wait", "--timeout=3m")
        install_seconds = time.monotonic() - started
        assert "kubectl apply -f examples/quickstart.yaml" in installed.stdout  # NOTES.txt tells the next step
        pod = the_operator_pod(chart)
        assert pod["spec"]["nodeName"] == rn.REAL_NODE_NAME
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        assert pod["spec"]["containers"][0]["image"] == operator_image_name
        assert_hardened(pod["spec"])
        assert_runs_hardened(container_process(pod))

        started = time.monotonic()
        kube.kubectl("apply", "-f", str(REPO / "examples" / "quickstart.yaml"))
        wait_ready(kube, chart, "quickstart")
        ready_seconds = time.monotonic() - started
        service_ip = (kube.get(SERVICE, "quickstart") or {})["spec"]["clusterIP"]
        assert infer_identity_once_routed(service_ip, "http", (1.0, 2.0)) == [1.0, 2.0]
        # The operator's metrics through the chart's metrics Service, as Prometheus would scrape them.
        metrics_ip = chart.get("-n", OPERATOR_NS, "service", f"{RELEASE}-metrics")["spec"]["clusterIP"]
        exposition = wait_for("the metrics Service to answer", lambda: http_text(f"http://{metrics_ip}:8080/metrics"), timeout=30)
        assert "triton_operator_reconcile_duration_seconds_count" in exposition
        assert "triton_operator_inferenceservices 1.0" in exposition
        deployment = kube.get(DEPLOYMENT, "quickstart") or {}
        triton_pods = {p["metadata"]["uid"] for p in kube.list(POD, "serving.triton-operator.dev/inferenceservice=quickstart")}

        # Upgrade: a new operator pod (Recreate, never two at once), the Triton fleet untouched.
        chart.helm("upgrade", RELEASE, str(CHART), "-n", OPERATOR_NS, "--reuse-values", "--set", "verbose=true", "--wait", "--timeout=3m")
        upgraded = wait_for(
            "the upgraded operator pod, Ready",
            lambda: next(
                (
                    p
                    for p in operator_pods(chart)
                    if p["metadata"]["uid"] != pod["metadata"]["uid"]
                    and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                ),
                None,
            ),
            timeout=120,
        )
        assert "--verbose" in upgraded["spec"]["containers"][0]["args"]
        assert (kube.get(DEPLOYMENT, "quickstart") or {})["metadata"]["generation"] == deployment["metadata"]["generation"]
        assert {p["metadata"]["uid"] for p in kube.list(POD, "serving.triton-operator.dev/inferenceservice=quickstart")} == triton_pods
        # ... and the new pod reconciles: a child deleted by hand comes back.
        kube.delete(SERVICE, "quickstart")
        wait_for("the Service repaired by the upgraded operator", lambda: kube.get(SERVICE, "quickstart"), timeout=60)
        wait_ready(kube, chart, "quickstart")

        # Uninstall: the operator goes, the models keep serving (no finalizer holds anything).
        chart.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout=2m")
        wait_for("no operator pod", lambda: not operator_pods(chart), timeout=60)
        assert kube.status("quickstart")["phase"] == "Ready"
        service_ip = (kube.get(SERVICE, "quickstart") or {})["spec"]["clusterIP"]
        # The repaired Service has a new ClusterIP, which kube-proxy programs a moment later (until then the
        # node has no route to it).
        wait_for("the repaired Service to route", lambda: http_text(f"http://{service_ip}:8000/v2/health/live") is not None, timeout=30)
        assert infer_identity(service_ip, "grpc", (3.0,)) == [3.0]
        assert infer_identity(service_ip, "http", (4.0,)) == [4.0]
        print(f"\n[node tier] helm install --wait (operator pod Ready) {install_seconds:.1f} s; quickstart apply -> Ready {ready_seconds:.1f} s")
    finally:
        chart.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--ignore-not-found", "--wait", check=False)
        chart.kubectl("delete", "namespace", OPERATOR_NS, "--wait=false", "--ignore-not-found", check=False)


def metrics_of(pod: dict[str, Any]) -> dict[str, float]:
    """The operator pod's own metrics (its pod IP, port 8080), summed per metric name; empty while it does not
    answer."""
    return scrape_sums(f"http://{pod['status']['podIP']}:8080/metrics") or {}


def ready_operator_pods(chart: Chart, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        pods = operator_pods(chart)
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return ready if len(ready) == count == len(pods) else None

    return wait_for(f"{count} operator pods Ready", probe, timeout=120)


def the_working_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one pod that says it works while every other says it stands by; None until that holds."""
    metrics = [metrics_of(p) for p in pods]
    if any("triton_operator_working" not in m for m in metrics):
        return None
    working = [p for p, m in zip(pods, metrics, strict=True) if m["triton_operator_working"] == 1.0]
    return working[0] if len(working) == 1 else None


def test_two_operator_pods_one_works_and_the_standby_takes_over(kube: Kube, chart: Chart, chart_values: list[str]) -> None:
    values = [*chart_values, "--set", "replicaCount=2"]
    wait_for("no operator namespace left terminating", lambda: not chart.exists("namespace", OPERATOR_NS), timeout=120)
    try:
        chart.helm("install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--create-namespace", *values, "--wait", "--timeout=3m")
        pods = ready_operator_pods(chart, 2)
        assert {p["spec"]["nodeName"] for p in pods} == {rn.REAL_NODE_NAME}
        worker = wait_for("exactly one operator pod working", lambda: the_working_pod(pods), timeout=30)
        (standby,) = [p for p in pods if p["metadata"]["uid"] != worker["metadata"]["uid"]]
        # the oldest pod works (a tie in creation seconds leaves either)
        assert worker["metadata"]["creationTimestamp"] <= standby["metadata"]["creationTimestamp"]

        kube.kubectl("apply", "-f", str(REPO / "examples" / "quickstart.yaml"))
        wait_ready(kube, chart, "quickstart")
        service_ip = (kube.get(SERVICE, "quickstart") or {})["spec"]["clusterIP"]
        assert infer_identity_once_routed(service_ip, "http", (1.0,)) == [1.0]
        quiet = metrics_of(standby)
        assert quiet.get("triton_operator_api_writes_total", 0.0) == 0.0  # the standby wrote nothing of its own
        assert quiet["triton_operator_inferenceservices"] == 0.0

        # The working pod goes (a node drain, a rollout, a deleted pod): the standby takes over when it exits.
        chart.kubectl("-n", OPERATOR_NS, "delete", "pod", worker["metadata"]["name"], "--wait=false")
        deleted = time.monotonic()
        wait_for("the standby to work", lambda: metrics_of(standby).get("triton_operator_working") == 1.0, timeout=60)
        handover = time.monotonic() - deleted
        kube.delete(SERVICE, "quickstart")
        wait_for("the Service repaired by the new worker", lambda: kube.get(SERVICE, "quickstart"), timeout=60)
        wait_ready(kube, chart, "quickstart")

        # The Deployment's replacement pod is the younger one: it stands by.
        pods = ready_operator_pods(chart, 2)
        (replacement,) = [p for p in pods if p["metadata"]["uid"] != standby["metadata"]["uid"]]
        assert wait_for("one worker again", lambda: the_working_pod(pods), timeout=30)["metadata"]["uid"] == standby["metadata"]["uid"]
        assert metrics_of(replacement)["triton_operator_working"] == 0.0
        service_ip = (kube.get(SERVICE, "quickstart") or {})["spec"]["clusterIP"]
        wait_for("the repaired Service to route", lambda: http_text(f"http://{service_ip}:8000/v2/health/live") is not None, timeout=30)
        assert infer_identity(service_ip, "http", (2.0,)) == [2.0]
        print(f"\n[node tier] two operator pods: the standby worked {handover:.1f} s after the working pod was deleted")
    finally:
        chart.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--ignore-not-found", "--wait", check=False)
        chart.kubectl("delete", "namespace", OPERATOR_NS, "--wait=false", "--ignore-not-found", check=False)
