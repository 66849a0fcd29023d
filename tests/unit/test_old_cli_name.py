"""The store CLI's former name: ``python -m jobs.models`` runs :mod:`jobs.versions` as it is, so the cron lines
and scripts written before the rename keep working, without a warning in their logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobs import models, versions
from tests.support import REPO


def test_the_old_module_name_runs_the_same_commands_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models.main is versions.main
    store = tmp_path / "store"
    store.mkdir()
    old = subprocess.run(
        [sys.executable, "-m", "jobs.models", "list", "--store", str(store)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (old.returncode, old.stdout, old.stderr) == (0, f"no versions in {store}\n", "")
    assert versions.main(["list", "--store", str(store)]) == 0
    assert capsys.readouterr().out == old.stdout
