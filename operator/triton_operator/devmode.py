"""``triton-operator dev up|down``: the local cluster with the CRD installed and the operator running.

``dev up`` is the README's first command: it leaves a working setup behind (cluster, operator, an example
InferenceService that is Ready) and prints how to use it. The same pieces back the test fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.inference import infer_identity_once_routed
from triton_operator.devcluster.processes import free_ports
from triton_operator.devcluster.workloads import MODEL_CLAIM, model_claim_manifests, triton_image
from triton_operator.yamlio import dump_all_yaml, dump_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"


def _say(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def kubectl(cluster: LocalCluster, *args: str, check: bool = True, input_text: str | None = None) -> str:
    """Run the cluster's kubectl as the admin; returns stdout."""
    result = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def install_crds(cluster: LocalCluster) -> None:
    """Apply the checked-in CRD and wait until the API serves it."""
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(cluster, "wait", "--for=condition=Established", "--timeout=60s", "crd/inferenceservices.serving.triton-operator.dev")


@dataclass
class OperatorProcess:
    """The operator as a real process (``triton-operator run``), as it runs in production."""

    cluster: LocalCluster
    log_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.cluster.state_dir / "operator.pid"

    def start(self, detached: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "triton_operator.cli",
                    "run",
                    f"--kubeconfig={self.cluster.operator_kubeconfig}",
                    f"--metrics-port={self.metrics_port}",
                    "--health-port=0",
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detached,
            )
        self.pid_file.write_text(str(self.process.pid))
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the metrics endpoint answers and the log says the controller started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            if "triton-operator started" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the operator did not start within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop it (SIGTERM lets kopf shut down cleanly; SIGKILL simulates a crash)."""
        pid = self.process.pid if self.process else _read_pid(self.pid_file)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self.process):
            time.sleep(0.1)
        if _alive(pid, self.process):
            os.kill(pid, signal.SIGKILL)
            if self.process:
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)
        self.process = None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dev_up(example: Path | None) -> int:
    """Cluster with the real node, CRD, CPU Triton image, model claim, operator; then the example applied,
    waited for, and asked for a real inference through its Service."""
    cluster = LocalCluster(real_node=True)
    cluster.up()
    install_crds(cluster)
    _say("building (or reusing) the CPU Triton image")
    image = triton_image(cluster)
    kubectl(cluster, "apply", "-f", "-", input_text=dump_all_yaml(model_claim_manifests(cluster, "default")))
    kubectl(cluster, "wait", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s", f"pvc/{MODEL_CLAIM}")
    operator = OperatorProcess(cluster, cluster.logs_dir / "operator.log", free_ports(1)[0])
    if _read_pid(operator.pid_file) and _alive(_read_pid(operator.pid_file) or 0, None):
        _say("the operator is already running")
    else:
        operator.start(detached=True, extra_args=(f"--default-triton-image={image}",))
        _say(f"operator running (pid {operator.process.pid if operator.process else '?'}, log {operator.log_path})")
    if example and str(example):
        kubectl(cluster, "apply", "-f", str(example))
        name = _name_in(example)
        _say(f"waiting for InferenceService {name} to be Ready (Triton starts on the real node)")
        kubectl(cluster, "wait", "--for=condition=Ready", "--timeout=300s", f"inferenceservice/{name}")
        print(kubectl(cluster, "get", "inferenceservices", "-o", "wide"))
        status = json.loads(kubectl(cluster, "get", "inferenceservice", name, "-o", "json")).get("status", {})
        print(dump_yaml({"status": status}))
        cluster_ip = kubectl(cluster, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}")
        sent = (1.0, 2.0, 3.0, 4.0)
        answer = infer_identity_once_routed(cluster_ip, "http", sent)
        print(f"inference: identity{list(sent)} -> {answer}, answered by Triton in a pod of {name} via {cluster_ip}:8000")
    print(f"export KUBECONFIG={cluster.kubeconfig}\nexport PATH={cluster.bin_dir}:$PATH")
    _say("`triton-operator dev down` stops everything")
    return 0


def _name_in(manifest: Path) -> str:
    from triton_operator.yamlio import load_all_yaml

    for document in load_all_yaml(manifest.read_text()):
        if document.get("kind") == "InferenceService":
            return str(document["metadata"]["name"])
    raise ValueError(f"{manifest} holds no InferenceService")


def dev_down() -> int:
    """Operator, then cluster."""
    cluster = LocalCluster(real_node=True)
    OperatorProcess(cluster, cluster.logs_dir / "operator.log", 0).stop()
    cluster.down()
    _say("local cluster stopped")
    return 0
