"""Shared fixtures: one moto S3 server and one small local Ray cluster per test session; the tiers.

A test's tier is the folder it lives in (``unit/``, ``component/``, ``integration/``, ``e2e/``), and its marker is
set from that folder, so ``-m unit`` and ``pytest tests/unit`` select the same tests. A test module outside a tier
folder is refused. What the tests share (clusters, the S3 server, corpora, flags) lives in ``tests/support/``.

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

import pytest
from _pytest.doctest import DoctestItem

from tests.support import REPO
from tests.support.s3server import DUMMY_ENV, MotoServer

# Fixtures shared by the tiers' modules of one concern (a module's unit and component halves).
pytest_plugins = ("tests.support.infra", "tests.support.s3store", "tests.support.signing", "tests.support.tables")

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "component", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier; a test outside the tier folders is a usage error. The ``>>>``
    examples in docstrings (``--doctest-modules``) are unit tests."""
    for item in items:
        if isinstance(item, DoctestItem):
            item.add_marker(pytest.mark.unit)
            continue
        parts = item.path.resolve().relative_to(TESTS).parts
        if len(parts) < 2 or parts[0] not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test module belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, parts[0]))


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
