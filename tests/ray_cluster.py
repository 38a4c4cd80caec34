"""A real local multi-node Ray cluster (head + 2 worker nodes, one CPU each, loopback only) for the engine tests.

Started once per test session by the `ray_cluster` fixture and shut down by it; ~5 s on 2 cores.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every node binds 127.0.0.1
    ray = pytest.importorskip("ray", reason="the ray extra is part of the test extras; install '.[test]'")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
