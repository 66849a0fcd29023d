"""Shared fixtures: one moto S3 server and one small local Ray cluster per test session, tiny corpora.

Ray is started in-process with pinned CPUs and a small object store, in its own temp dir, and stopped at the
end of the session; tests never depend on task order. Its workers inherit dummy AWS credentials and the moto
endpoint (``AWS_ENDPOINT_URL``), as workers on a real cluster inherit their node's role and settings.
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

from tests.s3server import DUMMY_ENV, MotoServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """A real S3 endpoint: a moto server process on 127.0.0.1, shared by the session."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def ray_session(moto: MotoServer) -> Iterator[None]:
    """A real local Ray cluster (2 CPUs) shared by every test that needs one."""
    import ray

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]  # hermetic: nothing from the developer's AWS setup reaches the tests
    os.environ.update(
        {
            **DUMMY_ENV,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )

    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    # Workers must import test modules (e.g. training callbacks used as fault seams).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2,
        object_store_memory=200 << 20,
        include_dashboard=False,
        _temp_dir=temp,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def write_parquet(path: Path, texts: list[str | None], column: str = "text") -> Path:
    """Write one Parquet partition holding ``texts``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: pa.array(texts, pa.string())}), path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a store was left exactly as it was: its versions
    and its pointer. The run records under ``runs/`` are left out: every run adds one, whatever its outcome."""
    if not folder.exists():
        return {}
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in files if not p.relative_to(folder).match("runs/*")
    }
