"""Shared fixtures: one small local Ray cluster per test session, and tiny corpora made on the spot.

Ray is started in-process with pinned CPUs and a small object store, in its own temp dir, and stopped at the
end of the session; tests never depend on task order.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real local Ray cluster (2 CPUs) shared by every test that needs one."""
    import ray

    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    # Workers must import test modules (e.g. training callbacks used as fault seams).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, _temp_dir=temp,
             logging_level=logging.WARNING, configure_logging=False)
    yield
    ray.shutdown()


def write_parquet(path: Path, texts: list[str | None], column: str = "text") -> Path:
    """Write one Parquet partition holding ``texts``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: pa.array(texts, pa.string())}), path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a store was left exactly as it was."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
