"""B1, B2 and B3 on the local control plane: reconcile latency, throughput, memory and idle behaviour.

    python benchmarks/bench_control_plane.py [--services 1000] [--samples 100] [--idle-seconds 60]

Runs a fresh local cluster (real etcd, apiserver, controller-manager, scheduler; kwok nodes) and the operator as
a real process, then:
  B1  apply -> Deployment created, p50/p99, with 0 other InferenceServices and again with --services others
  B2  --services InferenceServices created at once -> every Deployment and Service applied and status written
  B3  operator RSS with --services InferenceServices; its CPU and API writes over an idle window
Writes benchmarks/results/control-plane.md and prints the same table. The operator's writes are counted from
the API server's audit log (user triton-operator), not from the operator's own bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.dynamic import DynamicClient

from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.processes import free_ports
from triton_operator.devmode import OperatorProcess, install_crds
from triton_operator.render import parse_inference_service
from triton_operator.resources.children import desired_children

RESULTS = Path(__file__).resolve().parent / "results" / "control-plane.md"
GROUP, VERSION, PLURAL = "serving.triton-operator.dev", "v1alpha1", "inferenceservices"
BENCH_LABEL = "triton-operator.dev/bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def manifest(name: str, replicas: int = 1) -> dict[str, Any]:
    """A CPU-only service pinned to the benchmark's kwok nodes (GPU nodes hold only 48 GPUs)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "modelRepository": {"uri": "s3://bench/models"},
            "gpu": {"count": 0},
            "nodeSelector": {BENCH_LABEL: "true"},
            "replicas": replicas,
        },
    }


@dataclass
class Seen:
    """First time each object name was seen in a watch, and a condition to wait on."""

    times: dict[str, float] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def mark(self, name: str) -> None:
        with self.lock:
            self.times.setdefault(name, time.perf_counter())
            self.lock.notify_all()

    def wait(self, names: Iterable[str], timeout: float) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        with self.lock:
            while not wanted <= self.times.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(wanted - self.times.keys())
                    raise TimeoutError(f"{len(missing)} not seen, e.g. {missing[:3]}")
                self.lock.wait(left)


def watch_in_background(list_fn: Callable[..., Any], on_event: Callable[[dict[str, Any]], None], **kwargs: Any) -> None:
    """Follow a watch in a daemon thread; it ends quietly when the cluster goes away at the end of the run."""

    def loop() -> None:
        while True:
            try:
                for event in k8s_watch.Watch().stream(list_fn, timeout_seconds=300, **kwargs):
                    on_event(event)
            except (OSError, urllib3.exceptions.HTTPError, k8s.ApiException):
                return

    threading.Thread(target=loop, daemon=True).start()


class Bench:
    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        self.api = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api)
        self.apps = k8s.AppsV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.dynamic = DynamicClient(self.api)
        self.namespace = namespace
        self.deployments = Seen()
        self.services = Seen()
        self.statuses = Seen()
        self.ready = Seen()
        ns = {"namespace": namespace}
        watch_in_background(self.apps.list_namespaced_deployment, lambda e: self.deployments.mark(e["object"].metadata.name), **ns)
        watch_in_background(self.core.list_namespaced_service, lambda e: self.services.mark(e["object"].metadata.name), **ns)
        watch_in_background(
            self.custom.list_namespaced_custom_object, self._on_service_event, group=GROUP, version=VERSION, plural=PLURAL, **ns
        )

    def _on_service_event(self, event: dict[str, Any]) -> None:
        status = event["object"].get("status") or {}
        name = event["object"]["metadata"]["name"]
        if status.get("observedGeneration"):
            self.statuses.mark(name)
        if status.get("phase") == "Ready":
            self.ready.mark(name)

    def apply_children_directly(self, name: str, replicas: int) -> None:
        """The baseline: the same Deployment and Service, applied by a plain client with no operator."""
        document = {**manifest(name, replicas), "metadata": {"name": name, "namespace": self.namespace}}
        isvc = parse_inference_service(document)
        for child in desired_children(isvc).present():
            child["metadata"].pop("ownerReferences")  # no owner exists: the garbage collector would delete them
            resource = self.dynamic.resources.get(api_version=child["apiVersion"], kind=child["kind"])
            self.dynamic.server_side_apply(resource, body=child, field_manager="baseline", force_conflicts=True)

    def create(self, name: str, replicas: int = 1) -> float:
        started = time.perf_counter()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest(name, replicas))
        return started

    def wait_pods_settled(self, timeout: float = 900) -> None:
        """Until no pod of this namespace is still pending or unready, so one run's pods do not slow the next."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(self.namespace).items
            if all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods):
                return
            time.sleep(1)
        raise TimeoutError(f"pods in {self.namespace} did not settle")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def b1(bench: Bench, prefix: str, samples: int) -> dict[str, float]:
    """Sequential creates; latency from just before the create call to the Deployment's ADDED event."""
    latencies = []
    for i in range(samples):
        name = f"{prefix}-{i}"
        started = bench.create(name)
        bench.deployments.wait([name], timeout=30)
        latencies.append((bench.deployments.times[name] - started) * 1000)
        time.sleep(0.05)  # one at a time, as a user applies
    return {"p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies)}


def bulk(action: Callable[[str], object], names: list[str], waits: list[Seen]) -> dict[str, float]:
    """Run ``action`` for every name from 16 client threads; time until every name was seen in every watch."""
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(action, names))
    for seen in waits:
        seen.wait(names, timeout=900)
    seconds = max(max(s.times[n] for n in names) for s in waits) - started
    return {"seconds": seconds, "per_second": len(names) / seconds}


def b2(bench: Bench, baseline: Bench, count: int, replicas: int) -> dict[str, float]:
    """``count`` InferenceServices at once -> every child and status; beside it, the same children applied
    directly by a client (the floor this machine's control plane sets)."""
    prefix = f"r{replicas}"
    direct = bulk(
        lambda name: baseline.apply_children_directly(name, replicas),
        [f"{prefix}-direct-{i}" for i in range(count)],
        [baseline.deployments, baseline.services],
    )
    say(f"B2 baseline, replicas {replicas} (children applied directly): {direct}")
    baseline.wait_pods_settled()
    result = bulk(
        lambda name: bench.create(name, replicas),
        [f"{prefix}-bulk-{i}" for i in range(count)],
        [bench.deployments, bench.services, bench.statuses],
    )
    bench.wait_pods_settled()
    return {**result, "baseline_seconds": direct["seconds"], "ratio": result["seconds"] / direct["seconds"]}


def process_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process, from /proc."""
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return rss_kb / 1024, cpu


def audit_writes(audit_log: Path) -> int:
    """Write requests by user triton-operator so far (the audit policy records only that user)."""
    count = 0
    with audit_log.open() as lines:
        for line in lines:
            entry = json.loads(line)
            if entry.get("stage") == "ResponseComplete" and entry.get("verb") in {"create", "update", "patch", "delete"}:
                count += 1
    return count


def b3(cluster: LocalCluster, pid: int, idle_seconds: float) -> dict[str, float]:
    rss, cpu_before = process_stats(pid)
    writes_before = audit_writes(cluster.audit_log)
    time.sleep(idle_seconds)
    rss_after, cpu_after = process_stats(pid)
    return {
        "rss_mb": max(rss, rss_after),
        "idle_cpu_percent": 100 * (cpu_after - cpu_before) / idle_seconds,
        "idle_writes_per_minute": (audit_writes(cluster.audit_log) - writes_before) * 60 / idle_seconds,
    }


def add_bench_nodes(core: k8s.CoreV1Api, count: int) -> None:
    """kwok nodes for the benchmark's CPU pods; kwok gives them room for a million pods."""
    for i in range(count):
        core.create_node(
            {
                "metadata": {
                    "name": f"bench-{i}",
                    "labels": {BENCH_LABEL: "true", "type": "kwok"},
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                }
            }
        )


def fresh_cluster(name: str) -> LocalCluster:
    """A local cluster started from nothing (a kept one holds an earlier run's objects), the CRD installed."""
    cluster = LocalCluster(name=name)
    cluster.down()
    cluster.up()
    install_crds(cluster)
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    cluster = fresh_cluster("bench")
    operator = OperatorProcess(cluster, cluster.logs_dir / "operator.log", free_ports(1)[0])
    operator.start()
    return run(cluster, operator, args)


def run(cluster: LocalCluster, operator: OperatorProcess, args: argparse.Namespace) -> int:
    assert operator.process is not None
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    core = k8s.CoreV1Api(k8s.ApiClient(configuration))
    for namespace in ("bench", "baseline"):
        core.create_namespace({"metadata": {"name": namespace}})
    bench = Bench(cluster, "bench")
    baseline = Bench(cluster, "baseline")
    add_bench_nodes(bench.core, 4)
    try:
        say(f"B1 with 0 others: {args.samples} sequential applies")
        alone = b1(bench, "solo", args.samples)
        say(f"B1 alone: {alone}")
        say(f"B2: {args.services} InferenceServices at once")
        podless = b2(bench, baseline, args.services // 2, replicas=0)
        say(f"B2 without pods: {podless}")
        created = b2(bench, baseline, args.services // 2, replicas=1)
        say(f"B2 with pods: {created}")
        say("waiting for every bulk service to be Ready before measuring idle")
        bench.ready.wait([f"r1-bulk-{i}" for i in range(args.services // 2)], timeout=900)
        time.sleep(10)
        say(f"B3: idle window of {args.idle_seconds:.0f} s")
        idle = b3(cluster, operator.process.pid, args.idle_seconds)
        say(f"B3: {idle}")
        say(f"B1 with {args.services} others")
        crowded = b1(bench, "crowd", args.samples)
        say(f"B1 crowded: {crowded}")
    finally:
        operator.stop()
        cluster.down()

    command = "python benchmarks/bench_control_plane.py " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Kubernetes v1.34.4"
    n = args.services
    table = f"""# Control-plane benchmarks (B1-B3)

Command: `{command.strip()}`
Machine: {machine}; date {time.strftime('%Y-%m-%d')}. Everything (etcd, apiserver, controller-manager, scheduler,
kwok, the operator and this client) shares the same 2 cores, so these are upper bounds for a real cluster.

| id | what | result | target |
|---|---|---|---|
| B1 | apply -> Deployment created, 0 others (p50 / p99) | {alone['p50_ms']:.0f} ms / {alone['p99_ms']:.0f} ms | <= 100 ms / <= 500 ms |
| B1 | apply -> Deployment created, {n} others (p50 / p99) | {crowded['p50_ms']:.0f} ms / {crowded['p99_ms']:.0f} ms | <= 100 ms / <= 500 ms |
| B2 | {n // 2} created at once, replicas 0 -> all children applied and status written | {podless['seconds']:.1f} s ({podless['per_second']:.0f}/s) | >= 50/s |
| B2 baseline | the same Deployments and Services applied directly by a client, no operator | {podless['baseline_seconds']:.1f} s; operator / baseline = {podless['ratio']:.2f}x | |
| B2 | {n // 2} more created at once, replicas 1 (kwok pods) -> all children applied and status written | {created['seconds']:.1f} s ({created['per_second']:.0f}/s) | >= 50/s |
| B2 baseline | the same Deployments and Services applied directly by a client, no operator | {created['baseline_seconds']:.1f} s; operator / baseline = {created['ratio']:.2f}x | |
| B3 | operator RSS with {n} InferenceServices (and their pods) | {idle['rss_mb']:.0f} MB | <= 150 MB |
| B3 | operator CPU while nothing changes | {idle['idle_cpu_percent']:.2f} % of one core | ~0 % |
| B3 | operator API writes while nothing changes (audit log) | {idle['idle_writes_per_minute']:.0f} per minute | 0 |
"""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
