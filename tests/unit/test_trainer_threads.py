"""The training actor sizes its BLAS and OpenMP pools itself, once it knows its node: Ray would start an actor
with thread variables of its own in a fresh process rather than one of its idle workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from jobs.training.trainer import Trainer, blas_threads


def blas_pools() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_actor_sizes_numpys_blas_to_its_nodes_cpus(tmp_path: Path) -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS loaded, as in any Ray worker
    with threadpool_limits(limits=None):  # whatever this test does, the process gets its pools back
        trainer = Trainer(str(tmp_path), node_cpus=lambda: 1)
        try:
            assert blas_pools() == {1}
            assert blas_threads(2) == 2 and blas_pools() == {2}
        finally:
            trainer.close()
