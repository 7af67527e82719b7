"""One real node for the local cluster: containerd + runc + the CNI bridge, a kubelet and kube-proxy, joined to
the control plane of :class:`~triton_operator.devcluster.cluster.LocalCluster`, so real pods run on this machine.

Why it looks like this (each point was found by running it here, see the node tier's tests):
- **Everything under the state directory.** containerd (root, state, socket, runc root, opt dir), the CNI
  configuration and IPAM data, the kubelet's root dir and pod logs, the kube-proxy config: all live in
  ``<state_dir>/node``, so two clusters never share a file and ``down()`` can prove it left nothing behind.
  The exceptions are paths the programs hard-code: containerd 1.6's shim sockets (``/run/containerd/s``,
  removed by the shims when they exit), libcni's result cache (``/var/lib/cni/results/<network>-*``) and
  the kubelet's ``/var/log/containers`` symlinks; ``down()`` removes what is ours in the last two.
- **The node IP is the bridge's gateway address** (``10.88.0.1`` on ``tobr0``, created before the kubelet
  starts). The kubelet refuses a loopback node IP, the kernel here has no ``dummy`` driver, and an address
  on eth0 would expose the kubelet outside the machine. The bridge's address is local to this machine,
  reachable from pods (hostIP works), and is where the kubelet listens for the apiserver's logs/exec.
- **Nothing leaves the machine.** The CNI bridge does not masquerade, and a filter chain
  (``TRITON-NODE-GUARD``) rejects pod traffic to anything but pods and drops traffic into the pod subnet
  that did not come from the bridge or this host. The Service range is routed onto the bridge (so a
  ClusterIP without kube-proxy rules stays local instead of following the default route); kwok's fake
  pod range is unreachable in every local cluster (``kwok.isolate_fake_pod_addresses``).
- **cgroup v1 without systemd**: ``cgroupDriver: cgroupfs``; the kubelet's cgroups live under their own
  root (``/triton-operator-node``) so ``down()`` can remove exactly them.
- **No CAP_SYS_RESOURCE**: containerd runs with ``restrict_oom_score_adj``, the kubelet and kube-proxy with
  ``oomScoreAdj: 0`` (they cannot lower their own score); kube-proxy's conntrack settings are 0 (leave the
  kernel's values alone) and it does not enable ``route_localnet`` (``localhostNodePorts: false``).
- **No registry**: the sandbox image ``localhost/pause:3.10`` is built locally (hack/build-pause-image.sh)
  and imported with ``ctr``; image garbage collection is off because nothing deleted could be pulled again.
- **Host settings are restored**: the kubelet writes kernel sysctls (``kernel.panic`` and friends) and the
  bridge plugin enables ``ip_forward``; their previous values are recorded in state.json first and written
  back by ``down()``, which also removes the bridge, veths, routes, iptables chains, mounts and cgroups.
- One real node per machine: the bridge name and pod subnet are fixed. The bridge's alias names the state
  directory that owns it, so a second cluster asking for a real node fails with a message that says which
  cluster holds it, instead of breaking that cluster's network.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .binaries import missing_binaries, repo_root
from .errors import ClusterError
from .kubeapi import ApiError, HttpsJson
from .pki import SERVICE_CLUSTER_IP_RANGE, CertPair, issue_certificate, write_kubeconfig
from .processes import ProcessRecord, is_alive, log_tail, stop_processes

#: The label the real node registers with; pods select it with a nodeSelector.
REAL_NODE_LABEL = ("triton-operator.dev/real-node", "true")
#: The node's name (one real node per machine, so one name).
REAL_NODE_NAME = "real-node"
#: The sandbox image named in containerd's config; built by hack/build-pause-image.sh.
PAUSE_IMAGE = "localhost/pause:3.10"
#: The linux bridge of the pod network: a name nothing else on a machine uses.
BRIDGE = "tobr0"
#: Pods get addresses from here; the first address is the bridge's, which is also the node IP.
POD_CIDR = "10.88.0.0/24"
NODE_IP = "10.88.0.1"
#: The CNI network name (libcni names its cache files after it, which is how down() finds ours).
CNI_NETWORK = "triton-operator-node"
#: Filter chain that keeps pod traffic inside the machine.
GUARD_CHAIN = "TRITON-NODE-GUARD"
#: The kubelet's cgroup root (in every cgroup v1 hierarchy here), so down() removes exactly the node's cgroups.
CGROUP_ROOT = "/triton-operator-node"
CGROUP_MOUNT = Path("/sys/fs/cgroup")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
NODE_BINARIES = ("kubelet", "kube-proxy")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip", "umount")
#: Kernel settings the kubelet (setupKernelTunables), the bridge plugin or kube-proxy may write; recorded
#: before the node starts and restored by down().
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)
#: Unix socket paths longer than this do not fit sockaddr_un (108 bytes, with containerd's ".ttrpc").
_MAX_SOCKET_PATH = 100
_IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")


# ---- layout and recorded state -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLayout:
    """Where everything of the real node lives inside the cluster's state directory."""

    state_dir: Path

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def containerd_config(self) -> Path:
        return self.node_dir / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.node_dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.node_dir / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.node_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.node_dir / "containerd" / "runc"

    @property
    def containerd_opt(self) -> Path:
        return self.node_dir / "containerd" / "opt"

    @property
    def cni_conf_dir(self) -> Path:
        return self.node_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.node_dir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.node_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.node_dir / "kubelet-config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.node_dir / "kubelet.kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.node_dir / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        return self.node_dir / "resolv.conf"

    @property
    def kube_proxy_config(self) -> Path:
        return self.node_dir / "kube-proxy-config.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.node_dir / "kube-proxy.kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.node_dir / "pki"


@dataclass(frozen=True)
class NodePorts:
    """Ports of the node's components, chosen free at start."""

    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int


#: How many ports :class:`NodePorts` needs.
NODE_PORT_COUNT = 4


@dataclass(frozen=True)
class RealNodeState:
    """What ``down()`` (possibly in another process) needs to undo the node: stored in state.json."""

    name: str
    node_ip: str
    pod_cidr: str
    bridge: str
    cni_network: str
    cgroup_root: str
    snapshotter: str
    containerd_socket: str
    kube_proxy: str
    ports: NodePorts
    #: sysctl -> value before the node started, restored by down()
    sysctls: dict[str, str]
    #: the routes added for the Service and kwok ranges ("<type> <prefix>"), removed by down()
    routes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["routes"] = list(self.routes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RealNodeState:
        fields = dict(data)
        fields["ports"] = NodePorts(**fields["ports"])
        fields["routes"] = tuple(fields.get("routes", ()))
        fields["sysctls"] = dict(fields.get("sysctls", {}))
        return cls(**fields)


# ---- preflight --------------------------------------------------------------------------------------------


def preflight(bin_dir: Path, layout: NodeLayout) -> list[str]:
    """Everything missing for a real node here, each with what to do about it; empty when all is in place."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("the real node needs root (mounts, network namespaces, iptables)")
    tools = [t for t in HOST_TOOLS if shutil.which(t) is None]
    plugins = [p for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).is_file()]
    if tools or plugins:
        problems.append(
            f"missing {', '.join(tools + [f'{CNI_BIN_DIR}/{p}' for p in plugins])}: run hack/install-node-packages.sh"
        )
    missing = missing_binaries(bin_dir, NODE_BINARIES)
    if missing:
        problems.append(f"{', '.join(missing)} missing from {bin_dir}: run hack/build-cluster-binaries.sh node")
    if not _hierarchies():
        problems.append(f"no cgroup hierarchy under {CGROUP_MOUNT}")
    if len(str(layout.containerd_socket)) + len(".ttrpc") > _MAX_SOCKET_PATH:
        problems.append(f"state directory path too long for a unix socket: {layout.containerd_socket}")
    return problems


def ensure_node_binaries(bin_dir: Path) -> None:
    """Build kubelet and kube-proxy into ``bin_dir`` if they are not there (the first time: many minutes)."""
    if not missing_binaries(bin_dir, NODE_BINARIES):
        return
    script = repo_root() / "hack" / "build-cluster-binaries.sh"
    proc = subprocess.run(["bash", str(script), "node"], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"{script} node failed with exit code {proc.returncode}")


def pause_image_archive() -> Path:
    """The OCI archive of :data:`PAUSE_IMAGE`, built (once, cached by input hash) by hack/build-pause-image.sh."""
    script = repo_root() / "hack" / "build-pause-image.sh"
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise ClusterError(f"{script} failed with exit code {proc.returncode}")
    return Path(lines[-1])


# ---- small helpers ----------------------------------------------------------------------------------------


def _run(argv: list[str], *, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed (exit code {proc.returncode}): {proc.stderr.strip()}")
    return proc


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """Current values of the sysctls that exist here (missing ones are left out)."""
    values: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def _write_sysctl(name: str, value: str) -> bool:
    try:
        _sysctl_path(name).write_text(value + "\n")
    except OSError:
        return False
    return True


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


# ---- overlayfs or native ------------------------------------------------------------------------------------


def choose_snapshotter(directory: Path) -> str:
    """``overlayfs`` when an overlay mount works on the filesystem of ``directory``, else ``native``.

    containerd only checks this when its overlayfs plugin loads (and then silently leaves it out), so the
    CRI plugin would fail on the first pod instead; probing first gives a working choice or a clear log line.
    """
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".overlay-probe"
    shutil.rmtree(probe, ignore_errors=True)
    dirs = {n: probe / n for n in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir(parents=True)
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    mounted = _run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])], check=False)
    if mounted.returncode == 0:
        _run(["umount", str(dirs["merged"])], check=False)
    shutil.rmtree(probe, ignore_errors=True)
    return "overlayfs" if mounted.returncode == 0 else "native"


# ---- configuration files ------------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string for what we write


def _toml(tables: dict[str, dict[str, object]]) -> str:
    """Enough TOML for containerd's config: top-level keys under "", then [tables] of scalars."""
    lines: list[str] = []
    for table, values in tables.items():
        if table:
            lines.append(f"\n[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def containerd_config(layout: NodeLayout, snapshotter: str) -> str:
    """containerd 1.6 (config version 2) with every path in the state directory and CRI set up for this host."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return _toml(
        {
            "": {
                "version": 2,
                "root": str(layout.containerd_root),
                "state": str(layout.containerd_state),
                # Unused snapshotters only log errors at startup; tracing would try to export spans.
                "disabled_plugins": [
                    "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing",
                ],
            },
            "grpc": {"address": str(layout.containerd_socket)},
            'plugins."io.containerd.internal.v1.opt"': {"path": str(layout.containerd_opt)},
            cri: {
                "sandbox_image": PAUSE_IMAGE,
                # No CAP_SYS_RESOURCE here: the kubelet's negative oom_score_adj for guaranteed pods would fail.
                "restrict_oom_score_adj": True,
                # Network namespaces bind-mounted under the state dir instead of /var/run/netns.
                "netns_mounts_under_state_dir": True,
                "disable_apparmor": True,
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
                "enable_selinux": False,
            },
            f"{cri}.containerd": {"snapshotter": snapshotter, "default_runtime_name": "runc"},
            f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
            f"{cri}.containerd.runtimes.runc.options": {"SystemdCgroup": False, "Root": str(layout.runc_root)},
            f"{cri}.cni": {"bin_dir": str(CNI_BIN_DIR), "conf_dir": str(layout.cni_conf_dir), "max_conf_num": 1},
        }
    )


def containerd_argv(layout: NodeLayout) -> list[str]:
    return [shutil.which("containerd") or "containerd", f"--config={layout.containerd_config}"]


def cni_conflist(layout: NodeLayout) -> dict[str, Any]:
    """bridge (gateway, no masquerade: nothing is meant to leave the machine) + host-local IPAM + portmap.

    The loopback interface of each pod is brought up by containerd's CRI plugin itself (its own loopback
    network, with the same ``loopback`` plugin from the bin dir), so it is not repeated in this chain.
    """
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def kubelet_configuration(layout: NodeLayout, ports: NodePorts, pki: dict[str, CertPair], ca: Path) -> dict[str, Any]:
    """The KubeletConfiguration (v1beta1) of the real node; see the module docstring for the why of each choice."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "30s", "cacheUnauthorizedTTL": "5s"}},
        "tlsCertFile": str(pki["serving"].cert),
        "tlsPrivateKeyFile": str(pki["serving"].key),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "staticPodPath": "",
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": str(layout.resolv_conf),
        "clusterDomain": "cluster.local",
        "registerNode": True,
        "registerWithTaints": [],
        # The disk is shared with builds and caches: only evict when the machine is really out of room.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        # Imported images cannot be pulled again (no registry): never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusReportFrequency": "1m",
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "maxPods": 110,
        "podPidsLimit": -1,
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        "volumeStatsAggPeriod": "1m",
        "shutdownGracePeriod": "0s",
        "localStorageCapacityIsolation": True,
    }


def kubelet_argv(bin_dir: Path, layout: NodeLayout, name: str) -> list[str]:
    key, value = REAL_NODE_LABEL
    return [
        str(bin_dir / "kubelet"),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubelet_kubeconfig}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.pki_dir}",
        f"--hostname-override={name}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={key}={value}",
        "--v=1",
    ]


def kube_proxy_configuration(layout: NodeLayout, ports: NodePorts, name: str) -> dict[str, Any]:
    """kube-proxy in iptables mode that writes no sysctl it does not need (conntrack 0 = leave as is)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kube_proxy_kubeconfig), "qps": 50, "burst": 100},
        "hostnameOverride": name,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "clusterCIDR": POD_CIDR,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": ["primary"],
        "oomScoreAdj": 0,
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {
            "localhostNodePorts": False,
            "masqueradeAll": False,
            "minSyncPeriod": "1s",
            "syncPeriod": "30s",
        },
    }


def kube_proxy_argv(bin_dir: Path, layout: NodeLayout) -> list[str]:
    return [str(bin_dir / "kube-proxy"), f"--config={layout.kube_proxy_config}", "--v=1"]


def write_node_files(layout: NodeLayout, server: str, cluster_pki: Path, ports: NodePorts, name: str) -> None:
    """Certificates, kubeconfigs, containerd/CNI/kubelet/kube-proxy configuration and resolv.conf."""
    layout.node_dir.mkdir(parents=True, exist_ok=True)
    layout.pki_dir.mkdir(parents=True, exist_ok=True)
    layout.pki_dir.chmod(0o700)
    # Issued into the cluster's pki dir (the CA is there), then used from there.
    certs = {
        "client": issue_certificate(
            cluster_pki, f"kubelet-{name}", f"system:node:{name}", ("system:nodes",), client=True
        ),
        "serving": issue_certificate(
            cluster_pki,
            f"kubelet-{name}-serving",
            name,
            server=True,
            dns_names=(name, "localhost"),
            ip_addresses=(NODE_IP, "127.0.0.1"),
        ),
        "proxy": issue_certificate(cluster_pki, "kube-proxy", "system:kube-proxy", client=True),
    }
    ca = cluster_pki / "ca.crt"
    write_kubeconfig(
        layout.kubelet_kubeconfig, server=server, ca_cert=ca, client=certs["client"], user=f"system:node:{name}"
    )
    write_kubeconfig(
        layout.kube_proxy_kubeconfig, server=server, ca_cert=ca, client=certs["proxy"], user="system:kube-proxy"
    )
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    layout.cni_ipam_dir.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf_dir / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(cni_conflist(layout), indent=2) + "\n")
    for d in (layout.kubelet_root, layout.pod_logs, layout.runc_root, layout.containerd_opt):
        d.mkdir(parents=True, exist_ok=True)
    # No cluster DNS exists and nothing outside the machine may be asked: pods get an empty resolver config.
    layout.resolv_conf.write_text("# pods of the local real node: no DNS (nothing outside this machine is reached)\n")
    layout.kubelet_config.write_text(yaml.safe_dump(kubelet_configuration(layout, ports, certs, ca), sort_keys=False))
    layout.kube_proxy_config.write_text(yaml.safe_dump(kube_proxy_configuration(layout, ports, name), sort_keys=False))


# ---- host network ------------------------------------------------------------------------------------------


def _link_alias(name: str) -> str | None:
    """The alias of link ``name`` ("" when it has none), or None when there is no such link."""
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return None


def bridge_owner() -> Path | None:
    """The state directory recorded on an existing bridge, if there is a bridge."""
    alias = _link_alias(BRIDGE)
    if alias is None:
        return None
    return Path(alias) if alias else Path()


def _state_has_node(state_dir: Path) -> bool:
    """True when ``state_dir`` records a real node that its own down() has not undone yet."""
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(state.get("real_node"))


def claim_bridge(state_dir: Path) -> None:
    """Fail when another cluster's real node owns the bridge (running or crashed: only its down() knows what
    to undo); otherwise remove a bridge whose owner is gone."""
    owner = bridge_owner()
    if owner is None:
        return
    if owner not in (Path(), state_dir) and _state_has_node(owner):
        raise ClusterError(
            f"the real node of the cluster in {owner} holds bridge {BRIDGE} and pods {POD_CIDR}; only one fits on "
            f"a machine: stop it first (LocalCluster({str(owner)!r}).down())"
        )
    _delete_links_on_bridge()
    _run(["ip", "link", "delete", BRIDGE], check=False)


def _guard_rules() -> list[list[str]]:
    """The rules of :data:`GUARD_CHAIN` (filter table, jumped to from FORWARD and INPUT): pod traffic stays
    between pods and this host, and nothing from another machine reaches pods or the node IP."""
    return [
        # From a pod to anything that is not a pod. ClusterIPs are already DNATed to pod IPs by the time
        # packets reach FORWARD/INPUT, so Service traffic between pods passes; DNS to the host's upstream
        # resolver, or anything on the internet, does not.
        ["-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "REJECT"],
        # Into the pod subnet (node IP included) from neither the bridge nor this host itself: another
        # machine that routes 10.88.0.0/24 to us must not reach the kubelet or the pods.
        ["-d", POD_CIDR, "!", "-i", BRIDGE, "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "DROP"],
    ]


def planned_routes() -> tuple[str, ...]:
    """The routes :func:`setup_network` adds, as ``"<kind> <prefix>"`` (recorded before they are added)."""
    return (f"dev {SERVICE_CLUSTER_IP_RANGE}",)


def setup_network(state_dir: Path) -> None:
    """Create the bridge with the node IP, the routes of :func:`planned_routes` and the guard chain; enable
    forwarding and bridge netfilter."""
    claim_bridge(state_dir)  # again: the caller's claim came before its state was recorded
    prefix = ipaddress.ip_network(POD_CIDR).prefixlen
    _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "link", "set", BRIDGE, "alias", str(state_dir)])
    _run(["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    for route in planned_routes():
        # A ClusterIP is DNATed in OUTPUT after the first route lookup: routing the Service range onto the
        # bridge makes a packet for a Service kube-proxy has not programmed (yet) stay on this machine
        # instead of following the default route, and gives host->Service traffic the node IP as source.
        _run(["ip", "route", "replace", route.split(" ", 1)[1], "dev", BRIDGE, "src", NODE_IP])
    _run(["iptables", "-w", "-N", GUARD_CHAIN], check=False)
    _run(["iptables", "-w", "-F", GUARD_CHAIN])
    for rule in _guard_rules():
        _run(["iptables", "-w", "-A", GUARD_CHAIN, *rule])
    for builtin in ("FORWARD", "INPUT"):
        if _run(["iptables", "-w", "-C", builtin, "-j", GUARD_CHAIN], check=False).returncode != 0:
            _run(["iptables", "-w", "-I", builtin, "1", "-j", GUARD_CHAIN])
    # Routing from the bridge back onto it (pod -> ClusterIP -> pod) needs forwarding, and bridged traffic
    # must traverse iptables for kube-proxy's DNAT to apply to it.
    _write_sysctl("net/ipv4/ip_forward", "1")
    _write_sysctl("net/bridge/bridge-nf-call-iptables", "1")


def _delete_links_on_bridge() -> None:
    listed = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False)
    for line in listed.stdout.splitlines():
        # "7: veth1234@if2: <...> ..." -> veth1234
        parts = line.split(":", 2)
        if len(parts) > 1:
            link = parts[1].strip().split("@", 1)[0]
            _run(["ip", "link", "delete", link], check=False)


def teardown_network(state: RealNodeState) -> None:
    """Remove veths, the bridge, the routes and the guard chain (each step tolerates it being gone already)."""
    owner = bridge_owner()
    if owner is not None:
        _delete_links_on_bridge()
        _run(["ip", "link", "delete", state.bridge], check=False)
    for route in state.routes:
        kind, prefix = route.split(" ", 1)
        if kind == "unreachable":
            _run(["ip", "route", "delete", "unreachable", prefix], check=False)
        else:
            _run(["ip", "route", "delete", prefix], check=False)
    for builtin in ("FORWARD", "INPUT"):
        while _run(["iptables", "-w", "-D", builtin, "-j", GUARD_CHAIN], check=False).returncode == 0:
            pass
    _run(["iptables", "-w", "-F", GUARD_CHAIN], check=False)
    _run(["iptables", "-w", "-X", GUARD_CHAIN], check=False)


def _rules(tool: str, table: str) -> list[list[str]] | None:
    """``<tool> -t <table> -S`` as argument lists (iptables quotes comments the way a shell would), or None."""
    listed = _run([tool, "-w", "-t", table, "-S"], check=False)
    if listed.returncode != 0:
        return None
    return [shlex.split(line) for line in listed.stdout.splitlines() if line.strip()]


def _drop_chains(tool: str, table: str, rules: list[list[str]], doomed: set[str]) -> None:
    """Delete every rule of another chain that jumps to a ``doomed`` chain, then flush and delete those."""
    for rule in rules:
        if len(rule) > 2 and rule[0] == "-A" and rule[1] not in doomed and any(w in doomed for w in rule[2:]):
            _run([tool, "-w", "-t", table, "-D", *rule[1:]], check=False)
    for chain in sorted(doomed):
        _run([tool, "-w", "-t", table, "-F", chain], check=False)
    for chain in sorted(doomed):
        _run([tool, "-w", "-t", table, "-X", chain], check=False)


def delete_kube_chains(tools: Iterable[str] = ("iptables", "ip6tables")) -> None:
    """Remove every ``KUBE-*`` chain (kube-proxy's and the kubelet's canaries) and the jumps to them.

    ``kube-proxy --cleanup`` removes its own chains first; this catches the kubelet's (``KUBE-IPTABLES-HINT``,
    ``KUBE-KUBELET-CANARY``, ``KUBE-FIREWALL``) and anything a crash left. One real node per machine, so
    ``KUBE-*`` is ours.
    """
    for tool in tools:
        if shutil.which(tool) is None:
            continue
        for table in _IPTABLES_TABLES:
            rules = _rules(tool, table)
            if rules:
                doomed = {r[1] for r in rules if len(r) == 2 and r[0] == "-N" and r[1].startswith("KUBE-")}
                _drop_chains(tool, table, rules, doomed)


def delete_portmap_chains(network: str, tools: Iterable[str] = ("iptables", "ip6tables")) -> None:
    """Remove the portmap plugin's rules for our CNI network's pods (hostPort), which it only removes on a
    CNI DEL that a brute-force teardown never sends: the per-pod ``CNI-DN-*`` chains its ``CNI-HOSTPORT-DNAT``
    entries (commented ``dnat name: "<network>"``) jump to, and the shared ``CNI-HOSTPORT-*`` chains once no
    other network's pod uses them."""
    marker = f'dnat name: "{network}"'
    for tool in tools:
        if shutil.which(tool) is None:
            continue
        rules = _rules(tool, "nat")
        if not rules:
            continue
        ours = [r for r in rules if r[:2] == ["-A", "CNI-HOSTPORT-DNAT"] and any(marker in w for w in r)]
        doomed = {r[r.index("-j") + 1] for r in ours if "-j" in r}
        for rule in ours:
            _run([tool, "-w", "-t", "nat", "-D", *rule[1:]], check=False)
        _drop_chains(tool, "nat", [r for r in rules if r not in ours], doomed)
        others = [r for r in rules if r[:2] == ["-A", "CNI-HOSTPORT-DNAT"] and r not in ours]
        if not others:
            shared = {r[1] for r in rules if len(r) == 2 and r[0] == "-N" and r[1].startswith("CNI-HOSTPORT-")}
            _drop_chains(tool, "nat", [r for r in rules if r not in ours], shared)


def kube_chains_left(tools: Iterable[str] = ("iptables", "ip6tables")) -> list[str]:
    """``tool/table/chain`` of every ``KUBE-*`` or ``CNI-*`` chain still present (for tests of ``down()``)."""
    left: list[str] = []
    for tool in tools:
        if shutil.which(tool) is None:
            continue
        for table in _IPTABLES_TABLES:
            for rule in _rules(tool, table) or []:
                if len(rule) == 2 and rule[0] == "-N" and rule[1].startswith(("KUBE-", "CNI-")):
                    left.append(f"{tool}/{table}/{rule[1]}")
    return left


# ---- mounts and cgroups -----------------------------------------------------------------------------------


def _unescape_mount(path: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1 : i + 4].isdigit() and len(path[i + 1 : i + 4]) == 3:
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them in)."""
    root = str(directory.resolve()) if directory.exists() else str(directory)
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = _unescape_mount(fields[4])
            if point == root or point.startswith(root + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: (-len(p.parts), str(p)))


def unmount_all(directory: Path, attempts: int = 5) -> list[Path]:
    """Unmount everything below ``directory`` (repeatedly: mounts can be stacked); lazily as a last resort.

    Returns the mount points still there (empty on success).
    """
    for attempt in range(attempts):
        points = mounts_under(directory)
        if not points:
            return []
        for point in points:
            lazy = ["-l"] if attempt >= 2 else []
            _run(["umount", *lazy, str(point)], check=False)
    return mounts_under(directory)


def _hierarchies() -> list[Path]:
    """The cgroup hierarchies to make the node's root in: the one unified tree on cgroup v2; on v1 (this
    project's machines) every mounted controller, and the hybrid ``unified`` tree when there is one."""
    if (CGROUP_MOUNT / "cgroup.controllers").exists():
        return [CGROUP_MOUNT]
    if not CGROUP_MOUNT.is_dir():
        return []
    return [h for h in sorted(CGROUP_MOUNT.iterdir()) if h.is_dir() and (h / "cgroup.procs").exists()]


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The node's cgroup root directories that exist, one per hierarchy."""
    rel = cgroup_root.strip("/")
    if not rel:
        return []
    return [h / rel for h in _hierarchies() if (h / rel).is_dir()]


def prepare_cgroups(cgroup_root: str) -> None:
    """Create the kubelet's cgroup root in every hierarchy (the kubelet requires it to exist).

    A new v1 cpuset cgroup starts with no CPUs and no memory nodes; they are copied from the parent so the
    kubelet (and runc below it) can use it.
    """
    rel = cgroup_root.strip("/")
    for hierarchy in _hierarchies():
        target = hierarchy / rel
        target.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            parent = hierarchy / name
            if parent.exists() and (target / name).exists() and not (target / name).read_text().strip():
                (target / name).write_text(parent.read_text())


def _cgroup_pids(cgroup_root: str) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(cgroup_root):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_cgroup(cgroup_root: str, timeout: float = 10.0) -> set[int]:
    """SIGKILL every process in the node's cgroups (containers whose shims are gone); returns survivors."""
    deadline = time.monotonic() + timeout
    pids = _cgroup_pids(cgroup_root)
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        pids = _cgroup_pids(cgroup_root)
    return pids


def remove_cgroups(cgroup_root: str) -> list[Path]:
    """rmdir the node's cgroup trees bottom-up; returns what could not be removed."""
    left: list[Path] = []
    for top in cgroup_dirs(cgroup_root):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            top.rmdir()
        except OSError:
            left.append(top)
    return left


# ---- containerd --------------------------------------------------------------------------------------------


def import_image(socket_path: Path | str, archive: Path, snapshotter: str) -> None:
    """``ctr images import`` into the CRI namespace (k8s.io), unpacked for the snapshotter the CRI plugin uses."""
    _run(
        ["ctr", "-a", str(socket_path), "-n", "k8s.io", "images", "import", "--snapshotter", snapshotter, str(archive)],
        timeout=1800,
    )


def _ctr(socket_path: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return _run(["ctr", "-a", socket_path, *args], check=False, timeout=timeout)


def remove_containers(socket_path: str) -> None:
    """Kill and delete every task and container containerd knows, in every namespace, while it still runs.

    The pods' sandboxes would be torn down by the kubelet through CRI, but down() must also work when the
    kubelet is gone; what CRI would have done beyond this (network namespace mounts, veths) down() does itself.
    """
    if not _socket_answers(Path(socket_path)):
        return
    namespaces = _ctr(socket_path, "namespaces", "ls", "-q").stdout.split()
    for ns in namespaces:
        tasks = _ctr(socket_path, "-n", ns, "tasks", "ls", "-q").stdout.split()
        for task in tasks:
            _ctr(socket_path, "-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", task)
        if tasks:
            _ctr(socket_path, "-n", ns, "tasks", "delete", "-f", *tasks, timeout=60)
        containers = _ctr(socket_path, "-n", ns, "containers", "ls", "-q").stdout.split()
        if containers:
            _ctr(socket_path, "-n", ns, "containers", "delete", *containers, timeout=60)


#: containerd 1.6 puts every shim's socket here, named by a hash (not configurable).
SHIM_SOCKET_DIR = Path("/run/containerd/s")


def shims(socket_path: str) -> dict[int, Path]:
    """containerd-shim-runc-v2 processes started by *our* containerd (their ``-address`` is our socket), each
    with the socket it listens on: ``/run/containerd/s/<sha256 of "<address>/<namespace>/<id>">``, which is
    containerd 1.6's ``shim.SocketAddress``."""
    shims: dict[int, Path] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if not argv or not argv[0].endswith("containerd-shim-runc-v2") or socket_path not in argv:
            continue
        flags = dict(zip(argv[1::2], argv[2::2], strict=False))
        key = f"{socket_path}/{flags.get('-namespace', '')}/{flags.get('-id', '')}"
        shims[int(proc.name)] = SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest()
    return shims


def shim_pids(socket_path: str) -> list[int]:
    """Pids of the shims our containerd started that still run."""
    return sorted(shims(socket_path))


def kill_shims(socket_path: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL shims of our containerd that are still running (containerd died or did not clean up), and
    remove the sockets they leave behind in /run/containerd/s; returns the pids that survived."""
    deadline = time.monotonic() + timeout
    running = shims(socket_path)
    sockets = set(running.values())
    while running and time.monotonic() < deadline:
        for pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        running = shims(socket_path)
    for sock in sockets:
        sock.unlink(missing_ok=True)
    return sorted(running)


# ---- the API side --------------------------------------------------------------------------------------------


def node_status(api: HttpsJson, name: str) -> tuple[bool, str]:
    """(Ready, a one-line description of why not) of the real node, after giving it its pod CIDR once it
    has registered (no controller allocates CIDRs in this cluster; the kubelet hands it to the runtime)."""
    try:
        node = api.get_or_none(f"/api/v1/nodes/{name}")
    except (OSError, ApiError) as exc:
        return False, str(exc)
    if node is None:
        return False, "not registered yet"
    if not node.get("spec", {}).get("podCIDR"):
        with contextlib.suppress(OSError, ApiError):
            api.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                {"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}},
                content_type="application/strategic-merge-patch+json",
            )
    conditions = {c.get("type"): c for c in node.get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {})
    if ready.get("status") != "True":
        return False, f"Ready={ready.get('status', 'missing')}: {ready.get('message', '')}".strip()
    # The node lifecycle controller taints a node not-ready when it registers and lifts the taint only on its next
    # pass after seeing Ready: until then pods are not scheduled there.
    lifecycle = sorted(
        t.get("key", "")
        for t in node.get("spec", {}).get("taints", [])
        if t.get("key", "").startswith("node.kubernetes.io/")
    )
    if lifecycle:
        return False, f"Ready, still tainted {', '.join(lifecycle)}"
    return True, "Ready"


# ---- teardown ----------------------------------------------------------------------------------------------


_NODE_PROCESSES = ("kubelet", "kube-proxy", "containerd")


def node_records(records: Iterable[ProcessRecord]) -> list[ProcessRecord]:
    """The records of the node's own processes."""
    return [r for r in records if r.name in _NODE_PROCESSES]


def teardown(
    layout: NodeLayout,
    state: RealNodeState,
    records: list[ProcessRecord],
    popens: dict[int, subprocess.Popen[bytes]],
    progress: Callable[[str], None],
) -> None:
    """Stop the node and undo everything it did to this machine, in dependency order:

    kubelet and kube-proxy (so nothing restarts containers), containers through containerd, containerd,
    leftover shims and container processes, mounts under the state directory (network namespaces, rootfs,
    the kubelet's volumes), veths and the bridge, routes and iptables chains, libcni's cache entries and the
    kubelet's log symlinks, the cgroups, and finally the sysctls as they were. Raises ClusterError when
    something could not be undone (with what), so ``down()`` never reports a clean machine that is not.
    """
    t0 = time.monotonic()
    problems: list[str] = []
    mine = node_records(records)
    agents = [r for r in mine if r.name in ("kubelet", "kube-proxy")]
    if stop_processes(agents, popens=popens):
        problems.append("kubelet/kube-proxy did not stop")
    remove_containers(state.containerd_socket)
    if stop_processes([r for r in mine if r.name == "containerd"], popens=popens, grace_seconds=10.0):
        problems.append("containerd did not stop")
    survivors = kill_shims(state.containerd_socket)
    if survivors:
        problems.append(f"containerd shims {survivors} did not stop")
    left = kill_cgroup(state.cgroup_root)
    if left:
        problems.append(f"container processes {sorted(left)} did not stop")
    stuck = unmount_all(layout.state_dir)
    if stuck:
        problems.append(f"still mounted: {', '.join(map(str, stuck))}")
    owner = bridge_owner()
    if owner not in (None, Path(), layout.state_dir):
        # Another cluster's node holds the machine's network now (ours was never set up, or was taken over
        # after its owner was gone): its bridge, chains and sysctls are not ours to undo.
        if problems:
            raise ClusterError("the real node was not cleaned up completely: " + "; ".join(problems))
        progress(f"real node stopped; the network belongs to the cluster in {owner} and is left alone")
        return
    teardown_network(state)
    kube_proxy = Path(state.kube_proxy)
    if kube_proxy.is_file():
        _run([str(kube_proxy), "--cleanup", "--v=0"], check=False, timeout=60)
    delete_kube_chains()
    delete_portmap_chains(state.cni_network)
    _remove_host_leftovers(layout, state)
    cgroups_left = remove_cgroups(state.cgroup_root)
    if cgroups_left:
        problems.append(f"cgroups not removed: {', '.join(map(str, cgroups_left))}")
    for name, value in state.sysctls.items():
        if read_sysctls([name]).get(name) != value:
            _write_sysctl(name, value)
    if problems:
        raise ClusterError("the real node was not cleaned up completely: " + "; ".join(problems))
    progress(f"real node removed: containers, mounts, bridge, iptables chains ({time.monotonic() - t0:.1f} s)")


#: Directories the programs create outside the state directory whatever they are told (the kubelet's device
#: plugin socket dir is a constant in 1.34, libcni's cache, the kubelet's log links, containerd 1.6's shim
#: sockets). Removed by down() when they are empty, children first.
HARDCODED_DIRS = (
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)


def _remove_host_leftovers(layout: NodeLayout, state: RealNodeState) -> None:
    """Files outside the state directory that the programs hard-code: libcni's result cache for our
    network, the kubelet's /var/log/containers symlinks into our pod logs and its device-plugin socket and
    checkpoint; then those directories themselves when nothing else is in them."""
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        # "<network>-<sandbox id>-<ifname>"; containerd's own loopback network caches "cni-loopback-<id>-lo"
        # for the same sandboxes, which is how those are told apart from other users' of this machine.
        for entry in results.glob(f"{state.cni_network}-*"):
            sandbox = entry.name[len(state.cni_network) + 1 :].rsplit("-", 1)[0]
            (results / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
            entry.unlink(missing_ok=True)
    logs = Path("/var/log/containers")
    if logs.is_dir():
        ours = str(layout.node_dir)
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(ours):
                    link.unlink()
    device_plugins = HARDCODED_DIRS[0]
    for name in ("kubelet.sock", "kubelet_internal_checkpoint"):
        (device_plugins / name).unlink(missing_ok=True)
    for directory in HARDCODED_DIRS:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only succeeds when empty: anything another program keeps there stays


def wait_for_socket(path: Path, record: ProcessRecord, timeout: float = 30.0) -> None:
    """Wait until containerd accepts connections on ``path``; fail at once (with its log) if it dies."""
    deadline = time.monotonic() + timeout
    while not _socket_answers(path):
        if not is_alive(record):
            raise ClusterError(f"containerd exited during startup; last lines of {record.log}:\n{log_tail(record.log)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"containerd did not listen on {path} within {timeout:.0f} s:\n{log_tail(record.log)}")
        time.sleep(0.05)
