"""The operator survives an API server restart: its watches reconnect, and it reconciles what changed meanwhile."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import DEPLOYMENT, Kube, isvc_manifest
from tests.polling import wait_for
from triton_operator.devcluster import LocalCluster
from triton_operator.devmode import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")


def test_the_operator_survives_an_apiserver_restart(
    kube: Kube, cluster: LocalCluster, operator: OperatorProcess
) -> None:
    kube.create(isvc_manifest("before", gpu={"count": 1}))
    wait_for("Ready before the restart", lambda: kube.condition("before", "Ready").get("status") == "True")
    cluster.restart("kube-apiserver")
    assert operator.process is not None
    assert operator.process.poll() is None, operator.log_tail()
    kube.create(isvc_manifest("after", gpu={"count": 1}))
    wait_for("a service created after the restart is reconciled", lambda: kube.get(DEPLOYMENT, "after"), timeout=120)
    wait_for("and Ready", lambda: kube.condition("after", "Ready").get("status") == "True", timeout=120)
    kube.kubectl("delete", "deployment", "before")
    wait_for("a child deleted after the restart comes back", lambda: kube.get(DEPLOYMENT, "before"), timeout=60)
