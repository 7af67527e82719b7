"""``LocalCluster``: a real control plane on loopback with kwok GPU nodes, for tests and ``dev up``.

Why these shapes:
- Everything needed to find and stop the cluster is in ``<state_dir>/state.json``, and the processes run
  detached, so ``dev up`` can exit and a later ``dev down`` (another process) can clean up.
- ``up()`` is idempotent: a healthy cluster in the state directory is reused (a test session and a
  developer's shell can share one), anything else there is stopped and wiped first, so a crashed run never
  poisons the next.
- Startup is a pipeline with progress lines: etcd -> apiserver -> (controller-manager, scheduler, nodes,
  kwok in parallel), each waited on by its health endpoint while every started process is watched, so a
  component that dies surfaces at once with the tail of its log instead of as a timeout a minute later.
- ``real_node=True`` adds one real node (containerd, kubelet, kube-proxy: see :mod:`.realnode`). Its
  containerd starts alongside etcd, its kubelet and kube-proxy once the apiserver is ready, and ``up()``
  returns only when the node is Ready. ``down()`` undoes it from state.json alone, before stopping the
  control plane, and refuses to delete a state directory that still has anything mounted under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import controlplane as cp
from . import realnode as rn
from .binaries import cache_root, find_bin_dir, missing_binaries
from .errors import ClusterError
from .kubeapi import HttpsJson, tls_context
from .kwok import isolate_fake_pod_addresses, kwok_argv, write_kwok_config
from .nodes import FakeNode, default_nodes, node_problems, register_nodes
from .pki import Pki, generate_pki, write_kubeconfig
from .processes import ProcessRecord, free_ports, is_alive, log_tail, start_process, stop_processes

#: A file that marks a directory as a cluster state directory; nothing else is ever deleted by down().
_MARKER = ".triton-operator-devcluster"
_STATE_VERSION = 1
_POLL_SECONDS = 0.05
#: Environment variables the components would read as configuration: a developer's shell must not leak in.
_ENV_PREFIXES_DROPPED = ("ETCD_", "ETCDCTL_", "KWOK_", "KUBECONFIG")


def _progress(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


class _PortTaken(ClusterError):
    """A component lost the race for one of the free ports chosen for it; a retry with new ports fixes it."""


class LocalCluster:
    """A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with
    kwok-managed fake GPU and CPU nodes, all on 127.0.0.1 (the API server on the node IP when a real node
    joins, so its pods reach it), its state in one directory."""

    def __init__(
        self,
        state_dir: Path | None = None,
        name: str = "dev",
        *,
        real_node: bool = False,
        admission_plugins: Sequence[str] = (),
        audited_groups: Sequence[str] = (),
    ) -> None:
        self.name = name
        #: Whether up() adds the real node (containerd + kubelet + kube-proxy); needs root and the node packages.
        self.real_node = real_node
        #: API server admission plugins beyond NodeRestriction, and user groups audited beside the operator user
        #: (for a test that runs the operator under a chart's ServiceAccount); used when up() starts the cluster.
        self.admission_plugins = tuple(admission_plugins)
        self.audited_groups = tuple(audited_groups)
        self.state_dir = Path(state_dir) if state_dir is not None else cache_root() / "clusters" / name
        self.state_dir = self.state_dir.expanduser().absolute()
        self._layout = cp.Layout(self.state_dir)
        self._bin_dir: Path | None = None
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._records: list[ProcessRecord] = []
        self._state: dict[str, Any] = {}

    # ---- public surface ---------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig: a client certificate in group system:masters."""
        return self._layout.kubeconfig

    @property
    def operator_kubeconfig(self) -> Path:
        """Kubeconfig of user ``triton-operator`` (system:masters), whose requests the audit log records."""
        return self._layout.operator_kubeconfig

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log: JSON lines, one per request of user ``triton-operator``."""
        return self._layout.audit_log

    @property
    def logs_dir(self) -> Path:
        """Where each component's stdout/stderr goes (``<component>.log``)."""
        return self._layout.logs

    @property
    def pki_dir(self) -> Path:
        """The cluster's CA (``ca.crt``/``ca.key``, e.g. to sign a real kubelet's certificate) and other keys."""
        return self._layout.pki_dir

    @property
    def bin_dir(self) -> Path:
        """The directory with etcd, kube-apiserver, ..., kubectl and kwok (built on first use)."""
        if self._bin_dir is None:
            recorded = self._read_state().get("bin_dir")
            if recorded and not missing_binaries(Path(recorded)):
                self._bin_dir = Path(recorded)
            else:
                self._bin_dir = find_bin_dir()
        return self._bin_dir

    @property
    def server(self) -> str:
        """``https://<address>:<port>`` of the running apiserver: 127.0.0.1, or the node IP with a real node."""
        server = self._state.get("server") or self._read_state().get("server")
        if not server:
            raise ClusterError(f"no cluster has been started in {self.state_dir}")
        return str(server)

    @property
    def real_node_name(self) -> str:
        """The real node's Node name (it also carries the label ``triton-operator.dev/real-node=true``)."""
        return rn.REAL_NODE_NAME

    @property
    def containerd_socket(self) -> Path:
        """The real node's containerd socket (for ``ctr -a <socket> -n k8s.io ...``)."""
        return rn.NodeLayout(self.state_dir).containerd_socket

    def import_image(self, archive: Path) -> None:
        """Import an OCI image archive (e.g. from hack/oci_image.py) into the real node's containerd, for pods
        with ``imagePullPolicy: IfNotPresent`` (there is no registry to pull from)."""
        node = self._read_state().get("real_node")
        if not node:
            raise ClusterError(f"no real node runs in {self.state_dir}: start it with LocalCluster(real_node=True)")
        state = rn.RealNodeState.from_json(node)
        rn.import_image(state.containerd_socket, archive, state.snapshotter)

    def is_running(self) -> bool:
        """True when every recorded process is alive and the apiserver answers /readyz (and, when a real node
        is asked for, it was started: a cluster without one is not reused)."""
        state = self._read_state()
        records = [ProcessRecord.from_json(p) for p in state.get("processes", [])]
        if not state.get("complete") or not records or not all(is_alive(r) for r in records):
            return False
        if self.real_node and not state.get("real_node"):
            return False
        api = self._admin_api(str(state["server"]), timeout=2.0)
        try:
            return api.healthy("/readyz")
        finally:
            api.close()

    def up(self) -> None:
        """Start the cluster, or reuse the healthy one already running in the state directory."""
        with self._lock():
            if self.is_running():
                self._state = self._read_state()
                _progress(f"reusing the running cluster at {self.server} (KUBECONFIG={self.kubeconfig})")
                return
            self._stop_all()
            self._wipe()
            bin_dir = self.bin_dir
            pause_archive = self._prepare_real_node(bin_dir) if self.real_node else None
            for attempt in range(3):
                try:
                    self._start(bin_dir, pause_archive)
                    return
                except _PortTaken as exc:
                    self._stop_all()
                    self._wipe()
                    if attempt == 2:
                        raise ClusterError(f"could not get free ports after 3 attempts: {exc}") from exc
                    _progress(f"a port was taken by someone else; retrying with new ports ({exc})")
                except BaseException:
                    # Leave nothing running (Ctrl-C included); the logs stay in the state directory.
                    self._stop_all()
                    raise

    def restart(self, component: str, timeout: float = 60.0) -> None:
        """Stop one component and start it again with the same command line, as a crash and a supervisor's
        restart would (fault tests: the operator must survive an API server restart). Waits until the API server
        is ready again."""
        with self._lock():
            self._state = self._read_state()
            records = [ProcessRecord.from_json(p) for p in self._state.get("processes", [])]
            old = next((r for r in records if r.name == component), None)
            if old is None:
                raise ClusterError(f"no {component} runs in {self.state_dir}")
            stop_processes([old])
            self._spawn_record(component, list(old.argv), records)
        api = self._admin_api(self.server, timeout=2.0)
        deadline = time.monotonic() + timeout
        try:
            while not api.healthy("/readyz"):
                if time.monotonic() > deadline:
                    raise ClusterError(f"the API server was not ready {timeout:.0f} s after restarting {component}")
                time.sleep(0.1)
        finally:
            api.close()

    def down(self) -> None:
        """Stop every process of this cluster (even if another process started it) and remove its state."""
        with self._lock():
            self._stop_all()
            self._wipe()
            self._state = {}

    # ---- startup ------------------------------------------------------------------------------------------

    def _prepare_real_node(self, bin_dir: Path) -> Path:
        """Build what the real node needs (kubelet, kube-proxy, the pause image) before anything starts, and
        fail early, naming the fix, if the machine lacks something."""
        rn.ensure_node_binaries(bin_dir)
        problems = rn.preflight(bin_dir, rn.NodeLayout(self.state_dir))
        if problems:
            raise ClusterError("cannot start the real node: " + "; ".join(problems))
        return rn.pause_image_archive()

    def _start(self, bin_dir: Path, pause_archive: Path | None = None) -> None:
        t0 = time.monotonic()
        layout = self._layout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / _MARKER).touch()
        # With a real node the API server listens on the node IP (still local: the guard chain drops it from
        # other machines), so pods reach it through the kubernetes Service, as an in-cluster operator does.
        address = rn.NODE_IP if pause_archive is not None else "127.0.0.1"
        pki = generate_pki(layout.pki_dir, apiserver_ips=(address,))
        all_ports = free_ports(cp.PORT_COUNT + (rn.NODE_PORT_COUNT if pause_archive is not None else 0))
        ports = cp.Ports.from_list(all_ports)
        server = f"https://{address}:{ports.apiserver}"
        self._write_configs(pki, server)
        self._state = {
            "version": _STATE_VERSION,
            "name": self.name,
            "server": server,
            "bin_dir": str(bin_dir),
            "ports": vars(ports),
            "processes": [],
            "complete": False,
        }
        self._save_state()

        node: rn.RealNodeState | None = None
        if pause_archive is not None:
            node = self._start_containerd(pki.dir, server, rn.NodePorts(*all_ports[cp.PORT_COUNT :]))

        self._spawn("etcd", cp.etcd_argv(bin_dir, layout, ports))
        self._wait({"etcd": lambda: _etcd_healthy(cp.etcd_url(ports))}, t0, timeout=30)

        self._spawn("kube-apiserver", cp.apiserver_argv(bin_dir, layout, ports, pki, self.admission_plugins, address))
        api = self._admin_api(server)
        try:
            if node is not None and pause_archive is not None:
                # While the apiserver starts: the sandbox image must be in containerd before the first pod.
                self._import_pause(node, pause_archive, t0)
            self._wait({"kube-apiserver": lambda: api.healthy("/readyz")}, t0, timeout=90)
            self._spawn("kube-controller-manager", cp.controller_manager_argv(bin_dir, layout, ports, pki))
            self._spawn("kube-scheduler", cp.scheduler_argv(bin_dir, layout, ports, pki))
            nodes = default_nodes(cpu_nodes=node is None)
            if not isolate_fake_pod_addresses():
                _progress("warning: not root, so kwok's pod range is not marked unreachable: asking Triton in a fake pod times out")
            register_nodes(api, nodes)
            self._spawn("kwok", kwok_argv(bin_dir, layout.component_kubeconfig("kwok"), layout.kwok_config))
            node_detail: list[str] = []
            checks = self._start_node_agents(bin_dir, node, api, node_detail) if node is not None else {}
            kcm = self._admin_api(f"https://127.0.0.1:{ports.controller_manager}")
            scheduler = self._admin_api(f"https://127.0.0.1:{ports.scheduler}")
            try:
                self._wait(
                    {
                        "kube-controller-manager": lambda: kcm.healthy("/healthz"),
                        "kube-scheduler": lambda: scheduler.healthy("/healthz"),
                        f"{len(nodes)} kwok nodes": lambda: not self._nodes_pending(api, nodes),
                        "default service account": lambda: (
                            api.get_or_none("/api/v1/namespaces/default/serviceaccounts/default") is not None
                        ),
                        **checks,
                    },
                    t0,
                    timeout=90 if node is None else 180,
                    describe=lambda: "; ".join([*self._nodes_pending(api, nodes), *node_detail]),
                )
            finally:
                kcm.close()
                scheduler.close()
        finally:
            api.close()
        self._state["complete"] = True
        self._save_state()
        _progress(f"cluster ready in {time.monotonic() - t0:.1f} s: export KUBECONFIG={self.kubeconfig}")

    def _start_containerd(self, cluster_pki: Path, server: str, ports: rn.NodePorts) -> rn.RealNodeState:
        """Record what down() must undo, then change the host (bridge, routes, guard chain, cgroups) and start
        containerd. The record comes first so a crash half-way is still cleaned up by the next up()/down()."""
        # Before anything is recorded: a node recorded here is one down() tears down, bridge included.
        rn.claim_bridge(self.state_dir)
        node_layout = rn.NodeLayout(self.state_dir)
        node = rn.RealNodeState(
            name=rn.REAL_NODE_NAME,
            node_ip=rn.NODE_IP,
            pod_cidr=rn.POD_CIDR,
            bridge=rn.BRIDGE,
            cni_network=rn.CNI_NETWORK,
            cgroup_root=rn.CGROUP_ROOT,
            snapshotter=rn.choose_snapshotter(node_layout.containerd_root),
            containerd_socket=str(node_layout.containerd_socket),
            kube_proxy=str(self.bin_dir / "kube-proxy"),
            ports=ports,
            sysctls=rn.read_sysctls(),
            routes=rn.planned_routes(),
        )
        self._state["real_node"] = node.to_json()
        self._save_state()
        rn.write_node_files(node_layout, server, cluster_pki, ports, node.name)
        node_layout.containerd_config.write_text(rn.containerd_config(node_layout, node.snapshotter))
        rn.prepare_cgroups(node.cgroup_root)
        rn.setup_network(self.state_dir)
        self._spawn("containerd", rn.containerd_argv(node_layout))
        _progress(f"real node: bridge {rn.BRIDGE} ({rn.NODE_IP}), containerd started (snapshotter {node.snapshotter})")
        return node

    def _start_node_agents(
        self, bin_dir: Path, node: rn.RealNodeState, api: HttpsJson, detail: list[str]
    ) -> dict[str, Callable[[], bool]]:
        """Start the kubelet and kube-proxy; return the checks that pass when the node is Ready and kube-proxy
        healthy (the node's join time is recorded in state.json as ``real_node_join_seconds``)."""
        node_layout = rn.NodeLayout(self.state_dir)
        node_t0 = time.monotonic()
        self._spawn("kubelet", rn.kubelet_argv(bin_dir, node_layout, node.name))
        self._spawn("kube-proxy", rn.kube_proxy_argv(bin_dir, node_layout))
        proxy = f"http://127.0.0.1:{node.ports.proxy_healthz}/healthz"

        def node_ready() -> bool:
            ready, why = rn.node_status(api, node.name)
            detail[:] = [f"{node.name}: {why}"]
            if ready:
                self._state["real_node_join_seconds"] = round(time.monotonic() - node_t0, 2)
            return ready

        return {f"real node {node.name}": node_ready, "kube-proxy": lambda: _http_ok(proxy)}

    def _import_pause(self, node: rn.RealNodeState, archive: Path, t0: float) -> None:
        record = next(r for r in self._records if r.name == "containerd")
        rn.wait_for_socket(Path(node.containerd_socket), record)
        rn.import_image(node.containerd_socket, archive, node.snapshotter)
        _progress(f"containerd ready, {rn.PAUSE_IMAGE} imported ({time.monotonic() - t0:.1f} s)")

    def _write_configs(self, pki: Pki, server: str) -> None:
        layout = self._layout
        layout.config_dir.mkdir(parents=True, exist_ok=True)
        kubeconfigs = {
            layout.kubeconfig: ("admin", "kubernetes-admin"),
            layout.operator_kubeconfig: ("triton-operator", cp.OPERATOR_USER),
            layout.component_kubeconfig("kube-controller-manager"): (
                "kube-controller-manager",
                "system:kube-controller-manager",
            ),
            layout.component_kubeconfig("kube-scheduler"): ("kube-scheduler", "system:kube-scheduler"),
            layout.component_kubeconfig("kwok"): ("kwok", "kwok"),
        }
        for path, (client, user) in kubeconfigs.items():
            write_kubeconfig(path, server=server, ca_cert=pki.ca.cert, client=pki.clients[client], user=user)
        cp.write_audit_policy(layout, self.audited_groups)
        write_kwok_config(layout.kwok_config)

    def _spawn(self, name: str, argv: list[str]) -> None:
        record = self._start_process(name, argv)
        self._records.append(record)
        self._state["processes"].append(record.to_json())
        self._save_state()

    def _spawn_record(self, name: str, argv: list[str], records: list[ProcessRecord]) -> None:
        """Start ``name`` again and put its new record where the old one was."""
        record = self._start_process(name, argv)
        self._state["processes"] = [(record if r.name == name else r).to_json() for r in records]
        self._save_state()

    def _start_process(self, name: str, argv: list[str]) -> ProcessRecord:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES_DROPPED)}
        proc, record = start_process(name, argv, self._layout.log(name), cwd=self.state_dir, env=env)
        self._popens[record.pid] = proc
        return record

    def _wait(
        self,
        checks: dict[str, Callable[[], bool]],
        t0: float,
        *,
        timeout: float,
        describe: Callable[[], str] | None = None,
    ) -> None:
        """Poll every check until all pass, printing each as it does; fail fast if a started process dies."""
        pending = dict(checks)
        deadline = time.monotonic() + timeout
        while pending:
            for what, check in list(pending.items()):
                if check():
                    del pending[what]
                    _progress(f"{what} ready ({time.monotonic() - t0:.1f} s)")
            if not pending:
                return
            self._raise_if_dead()
            if time.monotonic() > deadline:
                detail = describe() if describe is not None else ""
                tails = "\n".join(f"--- {r.name} ({r.log}) ---\n{log_tail(r.log, 15)}" for r in self._records)
                raise ClusterError(
                    f"timed out after {timeout:.0f} s waiting for {', '.join(pending)}"
                    + (f" ({detail})" if detail else "")
                    + f"\n{tails}"
                )
            time.sleep(_POLL_SECONDS)

    def _raise_if_dead(self) -> None:
        for record in self._records:
            if is_alive(record):
                continue
            proc = self._popens.get(record.pid)
            code = proc.poll() if proc is not None else None
            tail = log_tail(record.log)
            message = f"{record.name} exited during startup (exit code {code}); last lines of {record.log}:\n{tail}"
            if "address already in use" in tail:
                raise _PortTaken(message)
            raise ClusterError(message)

    @staticmethod
    def _nodes_pending(api: HttpsJson, nodes: list[FakeNode]) -> list[str]:
        try:
            listed = api.request("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")
        except OSError as exc:
            return [str(exc)]
        by_name = {n["metadata"]["name"]: n for n in listed.get("items", [])}
        pending = []
        for node in nodes:
            found = by_name.get(node.name)
            problems = ["missing"] if found is None else node_problems(found, node)
            if problems:
                pending.append(f"{node.name}: {', '.join(problems)}")
        return pending

    # ---- state, stop, wipe --------------------------------------------------------------------------------

    def _admin_api(self, base_url: str, timeout: float = 5.0) -> HttpsJson:
        pki = self._layout.pki_dir
        return HttpsJson(base_url, tls_context(pki / "ca.crt", pki / "admin.crt", pki / "admin.key"), timeout)

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._layout.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        tmp = self._layout.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._state, indent=2) + "\n")
        tmp.replace(self._layout.state_file)

    def _stop_all(self) -> None:
        state = self._read_state()
        recorded = [ProcessRecord.from_json(p) for p in state.get("processes", [])]
        records = list({(r.pid, r.start_ticks): r for r in [*recorded, *self._records]}.values())
        node_error: ClusterError | None = None
        node = state.get("real_node") or self._state.get("real_node")
        if node:
            # First, while the apiserver still runs: nothing else must hold the node's mounts or devices.
            try:
                rn.teardown(
                    rn.NodeLayout(self.state_dir), rn.RealNodeState.from_json(node), records, self._popens, _progress
                )
            except ClusterError as exc:
                node_error = exc
        # In waves: the apiserver's clients first, then the apiserver (which lingers while clients hold
        # watches, and hangs on shutdown without etcd), then etcd.
        waves = [
            [r for r in records if r.name not in ("kube-apiserver", "etcd")],
            [r for r in records if r.name == "kube-apiserver"],
            [r for r in records if r.name == "etcd"],
        ]
        t0 = time.monotonic()
        running = sum(1 for r in records if is_alive(r))
        survivors = [r for wave in waves for r in stop_processes(wave, popens=self._popens)]
        if survivors:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in survivors)
            raise ClusterError(f"could not stop {names}")
        if node_error is not None:
            raise node_error
        if running:
            _progress(f"stopped {running} processes ({time.monotonic() - t0:.1f} s)")
        self._records = []
        self._popens = {}

    def _wipe(self) -> None:
        """Remove the state directory, only if it is one (marker file) or empty: never a user's directory."""
        if not self.state_dir.exists():
            return
        mounted = rn.mounts_under(self.state_dir)
        if mounted:
            # rmtree would descend into them (a container's rootfs, a kubelet volume): never delete through a mount.
            raise ClusterError(f"not removing {self.state_dir}: still mounted: {', '.join(map(str, mounted))}")
        if (self.state_dir / _MARKER).exists():
            shutil.rmtree(self.state_dir)
        elif any(self.state_dir.iterdir()):
            raise ClusterError(f"{self.state_dir} is not empty and not a cluster state directory: not touched")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up()/down() on one state directory across processes (two test sessions, a shell)."""
        lock_path = self.state_dir.parent / f".{self.state_dir.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


#: No proxies: a developer's http_proxy must not capture requests to 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _etcd_healthy(url: str) -> bool:
    try:
        with _DIRECT.open(f"{url}/health", timeout=1.0) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return body.get("health") == "true"
