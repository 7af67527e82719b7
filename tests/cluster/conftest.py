"""Fixtures for the cluster tier: one real control plane and one operator process per test session, one
namespace per test.

Set TRITON_OPERATOR_KEEP_CLUSTER=1 to leave the cluster running after the session (the next session reuses it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.cluster.helpers import Kube
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster.processes import free_ports
from triton_operator.devmode import OperatorProcess, install_crds


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(name=os.environ.get("TRITON_OPERATOR_TEST_CLUSTER", "pytest"))
    local.up()
    install_crds(local)
    yield local
    if not os.environ.get("TRITON_OPERATOR_KEEP_CLUSTER"):
        local.down()


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    process = OperatorProcess(cluster, log, free_ports(1)[0])
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    return k8s.ApiClient(configuration)


@pytest.fixture
def namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def kube(api_client: k8s.ApiClient, cluster: LocalCluster, namespace: str) -> Kube:
    return Kube(api_client, cluster, namespace)
