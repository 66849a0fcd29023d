"""A training actor killed mid-run leaves its spool behind; the next trainer on the node removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from jobs.training.trainer import Trainer
from tests.support import REPO

OWNER = """
import sys, time
from jobs.training.trainer import Trainer
trainer = Trainer(sys.argv[1])
(trainer.dir / "parent").mkdir()
(trainer.dir / "parent" / "embedding.npy").write_bytes(b"x" * 4096)
print(trainer.dir, flush=True)
time.sleep(600)
"""


def test_a_new_trainer_removes_spools_no_live_trainer_owns(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    assert owner.stdout is not None
    stale = Path(owner.stdout.readline().decode().strip())
    live = Trainer(str(tmp_path))  # a live trainer's spool is left alone, even while the other one lives
    try:
        assert stale.is_dir() and live.dir.is_dir()
        os.kill(owner.pid, signal.SIGKILL)  # as when Ray kills the actor or its node: no cleanup runs
        owner.wait(timeout=30)
        assert (stale / "parent" / "embedding.npy").is_file()

        cache = tmp_path / "embedding-refresh-cache"  # not a spool (no owner file): never touched
        cache.mkdir()
        fresh = Trainer(str(tmp_path))
        assert not stale.exists()
        assert live.dir.is_dir() and fresh.dir.is_dir() and cache.is_dir()
        fresh.close()
    finally:
        live.close()
        if owner.poll() is None:
            owner.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedding-refresh-cache"]
