"""Command lines and config files of the control-plane components (etcd, kube-apiserver, controller-manager,
scheduler), as pure functions of a :class:`Layout` and the chosen ports, so they can be read and tested
apart from the process handling.

Choices that matter beyond "it starts":
- etcd runs with ``--unsafe-no-fsync``: the data is thrown away with the cluster, and fsync dominates write
  latency, which the write-heavy benchmarks would otherwise measure instead of the operator.
- controller-manager and scheduler run with ``--leader-elect=false``: with one replica each, leader election
  only adds a lease write every 2 s, noise for anything that counts API writes.
- The audit policy logs only the ``triton-operator`` user, at Metadata level, once per request
  (RequestReceived is omitted), so the audit log is a count of the operator's requests and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .pki import SERVICE_CLUSTER_IP_RANGE, Pki

#: The user the operator authenticates as (CN of its client certificate); the audit policy keys on it.
OPERATOR_USER = "triton-operator"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one cluster, chosen free at start."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        """Assign a list of free ports (see :func:`processes.free_ports`) in field order."""
        return cls(*ports[:5])


#: How many ports :class:`Ports` needs.
PORT_COUNT = 5


@dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives inside its state directory."""

    state_dir: Path

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (system:masters)."""
        return self.state_dir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """The operator's kubeconfig (user triton-operator)."""
        return self.state_dir / "triton-operator.kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.config_dir / f"{component}.kubeconfig"

    @property
    def audit_policy(self) -> Path:
        return self.config_dir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def kwok_config(self) -> Path:
        return self.config_dir / "kwok.yaml"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


def audit_policy(audited_groups: Sequence[str] = ()) -> dict[str, object]:
    """Metadata for the operator's requests (and those of ``audited_groups``, e.g. the ServiceAccounts of a
    namespace the operator runs in under a chart's RBAC), nothing for anyone else."""
    groups = [{"level": "Metadata", "userGroups": list(audited_groups)}] if audited_groups else []
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            *groups,
            {"level": "Metadata", "users": [OPERATOR_USER]},
            {"level": "None"},
        ],
    }


def write_audit_policy(layout: Layout, audited_groups: Sequence[str] = ()) -> None:
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    layout.audit_policy.write_text(yaml.safe_dump(audit_policy(audited_groups), sort_keys=False))


def etcd_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def etcd_url(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.etcd_client}"


def apiserver_argv(
    bin_dir: Path,
    layout: Layout,
    ports: Ports,
    pki: Pki,
    admission_plugins: Sequence[str] = (),
    address: str = "127.0.0.1",
) -> list[str]:
    """``admission_plugins`` are enabled beside NodeRestriction (e.g. OwnerReferencesPermissionEnforcement,
    on by default in OpenShift, which makes children's ownerReferences need RBAC on the owner's finalizers).
    ``address`` is where it listens and what the ``kubernetes`` Service's endpoint says: loopback, or the real
    node's IP when pods must reach the API (an operator running as a pod, through 10.96.0.1)."""
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url(ports)}",
        f"--bind-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--advertise-address={address}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=" + ",".join(["NodeRestriction", *admission_plugins]),
        "--allow-privileged=true",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        # apiserver -> kubelet (logs, exec) for the node tier's real kubelet, by its InternalIP only: the default
        # tries the Hostname first, which is a DNS query to the machine's upstream resolver (outside the machine).
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={pki.clients['apiserver-kubelet-client'].cert}",
        f"--kubelet-client-key={pki.clients['apiserver-kubelet-client'].key}",
        # The aggregation layer, for metrics adapters serving custom.metrics.k8s.io (autoscaling engine HPA).
        # Aggregator routing goes to endpoint IPs directly: there is no kube-proxy in the cluster tier.
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        "--enable-aggregator-routing=true",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        f"--cert-dir={layout.state_dir / 'apiserver'}",
    ]


def controller_manager_argv(bin_dir: Path, layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    kubeconfig = layout.component_kubeconfig("kube-controller-manager")
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--tls-cert-file={pki.components.cert}",
        f"--tls-private-key-file={pki.components.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--leader-elect=false",
        # The default client rate limit (20 qps) makes startup crawl (each controller's own service-account
        # client costs requests) and throttles pod creation for thousands of Deployments in the benchmarks.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
    ]


def scheduler_argv(bin_dir: Path, layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    kubeconfig = layout.component_kubeconfig("kube-scheduler")
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--tls-cert-file={pki.components.cert}",
        f"--tls-private-key-file={pki.components.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--leader-elect=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
    ]
