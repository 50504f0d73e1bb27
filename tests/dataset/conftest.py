"""Fixtures of the dataset tests: one local Ray instance for every Ray test of the session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance on 2 CPUs, started once (Ray is slow to start) and shared by the
    image and video Ray tests."""
    ray = pytest.importorskip("ray")  # requirements-ray.txt, installed by requirements-test.txt
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
