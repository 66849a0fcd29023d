"""Every integration test runs against the session's one local Ray cluster."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _ray_cluster(ray_session: None) -> None:
    """The session's Ray cluster, started by the first integration test and kept for the rest."""
