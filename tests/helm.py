"""helm and kubectl against a local cluster, shared by the tiers that install the chart: the cluster tier (lint,
templates, RBAC proof), the node tier (the operator as a pod on the real node) and the kind tier."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.helpers import KUBECTL_CACHE
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.binaries import cache_root

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "triton-operator"
BUILD_HELM = REPO / "hack" / "build-helm.sh"
RELEASE = "triton-operator"  # the full name is then just the release name: objects and the ServiceAccount
OPERATOR_NS = "triton-operator-system"


def helm_path() -> Path:
    """Where hack/build-helm.sh puts helm (its version and cache directory, with the same overrides)."""
    pinned = re.search(r"HELM_VERSION:-(v[0-9.]+)", BUILD_HELM.read_text())
    assert pinned, "hack/build-helm.sh names no default HELM_VERSION"
    return cache_root() / "bin" / f"helm-{os.environ.get('HELM_VERSION', pinned.group(1))}" / "helm"


@dataclass
class Chart:
    """helm and kubectl against one local cluster, as its admin unless another kubeconfig is given."""

    helm_binary: Path
    cluster: LocalCluster
    helm_home: Path

    def run(self, argv: list[str], input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **{f"HELM_{d}_HOME": str(self.helm_home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
        done = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False, env=env)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.helm_binary), f"--kubeconfig={self.cluster.kubeconfig}", *args], check=check)

    def kubectl(
        self, *args: str, input_text: str | None = None, kubeconfig: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.cluster.kubeconfig}"]
        return self.run([*argv, f"--cache-dir={KUBECTL_CACHE}", *args], input_text=input_text, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "-o", "json", *args).stdout))

    def exists(self, *args: str) -> bool:
        return self.kubectl("get", *args, check=False).returncode == 0

    def render(self, values: dict[str, Any]) -> str:
        """`helm template` of the chart with these values."""
        argv = [str(self.helm_binary), "template", RELEASE, str(CHART), "-n", OPERATOR_NS, "-f", "-"]
        return self.run(argv, input_text=yaml.safe_dump(values)).stdout

    def template(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """The same, as parsed documents."""
        return [d for d in yaml.safe_load_all(self.render(values)) if d]

    def token_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig holding a fresh token of the chart's ServiceAccount (TokenRequest API)."""
        token = self.kubectl("-n", OPERATOR_NS, "create", "token", RELEASE, "--duration=30m").stdout.strip()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": self.cluster.server, "certificate-authority": str(self.cluster.pki_dir / "ca.crt")}}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
            "current-context": "c",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def can_i(self, kubeconfig: Path, *args: str) -> bool:
        return self.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False).stdout.strip() == "yes"


def assert_hardened(pod_spec: dict[str, Any]) -> None:
    """The operator pod as the chart promises: non-root 65532, RuntimeDefault seccomp, read-only root with /tmp an
    emptyDir, no privilege escalation, no capabilities."""
    pod, container = pod_spec["securityContext"], pod_spec["containers"][0]["securityContext"]
    assert (pod["runAsNonRoot"], pod["runAsUser"], pod["seccompProfile"]) == (True, 65532, {"type": "RuntimeDefault"})
    assert (container["readOnlyRootFilesystem"], container["allowPrivilegeEscalation"]) == (True, False)
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod_spec["containers"][0]["volumeMounts"]
    assert "emptyDir" in next(v for v in pod_spec["volumes"] if v["name"] == "tmp")
