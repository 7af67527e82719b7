"""Operator failover: how soon another replica works, repairs and has caught up, with N InferenceServices.

    python -m benchmarks.bench_failover [--services 500] [--rounds 3] [--lifetime 10]

Runs a fresh local cluster (real etcd, apiserver, controller-manager, scheduler; kwok nodes), creates --services
InferenceServices, and measures three ways the working operator can go, side by side in one run:
  handover  two replicas with kopf peering (`--peering`); the working one exits cleanly (SIGTERM, as a deleted or
            drained pod does) and the standby takes over
  takeover  the same, but the working one is SIGKILLed (a crash, a lost node): the standby waits for the dead
            replica's record to expire (--lifetime)
  restart   the baseline: one standalone replica, SIGTERMed and started again at once (a container restart, minus
            the kubelet's own delays)
For each: seconds from the signal until the next replica works (`triton_operator_working` 1), until a Deployment
deleted right after the exit is repaired, and until every InferenceService is known and the work queue is empty;
and the API writes that next replica made to catch up. Writes benchmarks/results/failover.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from benchmarks.bench_control_plane import GROUP, PLURAL, VERSION, add_bench_nodes, fresh_cluster, manifest, say
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.processes import free_ports
from triton_operator.devmode import OperatorProcess, kubectl
from triton_operator.testing.metrics import scrape_sums

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "failover.md"
KOPF_CRDS = ROOT / "charts" / "triton-operator" / "crds" / "kopf-peering.yaml"
NAMESPACE = "failover"
PEERING = "bench"
PROBE = "svc-0"


def metrics(operator: OperatorProcess) -> dict[str, float]:
    """The operator's own metrics, each sample name summed over its labels; empty while it does not answer."""
    return scrape_sums(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=2) or {}


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 600) -> float:
    """Polls every 20 ms; returns the perf_counter time at which the condition first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


class Run:
    def __init__(self, cluster: LocalCluster, services: int, lifetime: int) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
        api = k8s.ApiClient(configuration)
        self.apps = k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)
        self.cluster = cluster
        self.services = services
        self.lifetime = lifetime
        self._count = 0

    def replica(self, peering: bool) -> OperatorProcess:
        """A new operator process (standalone, or one of the peers)."""
        self._count += 1
        process = OperatorProcess(self.cluster, self.cluster.logs_dir / f"operator-{self._count}.log", free_ports(1)[0])
        args = ("--peering", PEERING, "--peering-lifetime", str(self.lifetime)) if peering else ()
        process.start(extra_args=("--namespace", NAMESPACE, *args))
        return process

    def caught_up(self, operator: OperatorProcess) -> bool:
        seen = metrics(operator)
        return (
            seen.get("triton_operator_working") == 1.0
            and seen.get("triton_operator_inferenceservices") == self.services
            and seen.get("triton_operator_queue_depth") == 0.0
        )

    def probe_exists(self) -> bool:
        try:
            self.apps.read_namespaced_deployment(PROBE, NAMESPACE)
        except k8s.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def failover(self, leaving: OperatorProcess, sig: int, standby: OperatorProcess | None) -> tuple[dict[str, float], OperatorProcess]:
        """Signal the working replica, then time the next one: the standby, or (None) a standalone replica started
        once the old one has exited. Returns the numbers and that next replica."""
        writes_before = metrics(standby).get("triton_operator_api_writes_total", 0.0) if standby else 0.0
        started = time.perf_counter()
        leaving.stop(sig)
        self.apps.delete_namespaced_deployment(PROBE, NAMESPACE)
        deleted = time.perf_counter()
        after = standby or self.replica(peering=False)
        working = wait_until("the next replica works", lambda: metrics(after).get("triton_operator_working") == 1.0)
        repaired = wait_until("the deleted Deployment repaired", self.probe_exists)
        caught_up = wait_until("every InferenceService reconciled", lambda: self.caught_up(after))
        numbers = {
            "working": working - started,
            "repaired": repaired - deleted,
            "caught_up": caught_up - started,
            "writes": metrics(after).get("triton_operator_api_writes_total", 0.0) - writes_before,
        }
        say(f"  {numbers}")
        return numbers, after


def summary(rounds: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in rounds]
    if key == "writes":
        return f"{statistics.median(values):.0f}"
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lifetime", type=int, default=10, help="the peers' --peering-lifetime (the chart's default is 60)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    cluster = fresh_cluster("bench-failover")
    kubectl(cluster, "apply", "-f", str(KOPF_CRDS))
    kubectl(cluster, "wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    run = Run(cluster, args.services, args.lifetime)
    run.core.create_namespace({"metadata": {"name": NAMESPACE}})
    run.custom.create_namespaced_custom_object("kopf.dev", "v1", NAMESPACE, "kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}})
    add_bench_nodes(run.core, 4)
    results: dict[str, list[dict[str, float]]] = {"handover": [], "takeover": [], "restart": []}
    operators: list[OperatorProcess] = []
    try:
        worker = run.replica(peering=False)
        operators.append(worker)
        say(f"creating {args.services} InferenceServices")
        for i in range(args.services):
            body = {**manifest(f"svc-{i}"), "metadata": {"name": f"svc-{i}"}}
            run.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        wait_until("the first replica caught up", lambda: run.caught_up(worker))

        say("restart: one standalone replica, stopped and started again")
        for _ in range(args.rounds):
            numbers, worker = run.failover(worker, signal.SIGTERM, None)
            operators.append(worker)
            results["restart"].append(numbers)
        worker.stop()

        say("peering: two replicas; the working one leaves cleanly, or crashes")
        worker = run.replica(peering=True)
        operators.append(worker)
        wait_until("the peer caught up", lambda: run.caught_up(worker))
        for kind, sig in [("handover", signal.SIGTERM), ("takeover", signal.SIGKILL)] * args.rounds:
            standby = run.replica(peering=True)
            operators.append(standby)
            numbers, worker = run.failover(worker, sig, standby)
            results[kind].append(numbers)
    finally:
        for operator in operators:
            operator.stop()
        cluster.down()

    write(args, results)
    return 0


def write(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    command = "python -m benchmarks.bench_failover " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Kubernetes v1.34.4"
    rows = {
        "handover": "peering, the working replica exits cleanly (SIGTERM): the standby takes over",
        "takeover": f"peering, the working replica is SIGKILLed: the standby takes over once its record expires ({args.lifetime} s lifetime)",
        "restart": "baseline: one standalone replica, SIGTERMed and started again at once",
    }
    lines = [
        "# Operator failover",
        "",
        f"Command: `{command.strip()}`",
        f"Machine: {machine}; date {time.strftime('%Y-%m-%d')}. {args.services} InferenceServices (kwok pods), "
        f"{args.rounds} rounds each; median (min-max). Everything shares the same 2 cores.",
        "",
        "| way the worker goes | next replica works | deleted Deployment repaired | all reconciled, queue empty | its API writes to catch up |",
        "|---|---|---|---|---|",
    ]
    for kind, label in rows.items():
        r = results[kind]
        lines.append(f"| {label} | {summary(r, 'working')} | {summary(r, 'repaired')} | {summary(r, 'caught_up')} | {summary(r, 'writes')} |")
    handover, restart = statistics.median(r["working"] for r in results["handover"]), statistics.median(r["working"] for r in results["restart"])
    lines += ["", f"Handover / restart, time until the next replica works: {handover / restart:.2f}x."]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
