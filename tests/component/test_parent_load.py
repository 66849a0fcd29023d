"""The parent loaded while the corpus streams in: the same model as loading it at the end, fetched once, its
errors raised by finish() naming the file, and a run that ends mid-load leaves no spool behind."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from jobs.config import GateConfig, TrainingConfig
from jobs.errors import EXIT_REFUSED, EXIT_RETRYABLE, IntegrityError, StoppedError, VersionRemoved, exit_status
from jobs.storage.local import LocalStore
from jobs.storage.publish import write_manifest
from jobs.training.parent import ParentRequest
from jobs.training.trainer import Trainer, TrainRequest
from shards.partitions import Partition, discover, open_filesystem
from shards.pieces import whole
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, tokenize_piece
from tests.support.corpora import clustered
from tests.support.stores import CountingStore

TRAINING = TrainingConfig(vector_size=12, epochs=1, min_count=1, workers=1, seed=3)


def partition(tmp_path: Path, name: str, seed: int) -> Partition:
    path = tmp_path / "input" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(clustered(200, seed=seed)) + "\n")
    fs, root = open_filesystem(str(path))
    [found] = discover(fs, root)
    return found


def feed(trainer: Trainer, part: Partition) -> None:
    fs = open_filesystem(part.path)[0]
    trainer.ingest(part.uri, list(tokenize_piece(fs, whole(part), ReadOptions(), TokenizerConfig())), end=True)


def request(version: str, parent: str | None) -> TrainRequest:
    return TrainRequest(version=version, parent=parent, training=TRAINING, gate=GateConfig())


def spool(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def first_version(tmp_path: Path, store: LocalStore) -> list[str]:
    """Publish v1; return the names of the files a trainer fetches of it."""
    trainer = Trainer(spool(tmp_path / "spool"))
    feed(trainer, partition(tmp_path, "day0.txt", seed=1))
    candidate = trainer.finish(store, request("v1", None))
    # the lineage's gate history, as v1's own gate would have recorded it: judged against 0.4 and 0.6, kept 0.5
    history = {"checks": [{"name": "neighbourhood overlap", "candidate": 0.5, "history": [0.4, 0.6]}]}
    fields = {"version": "v1", "files": candidate.files, "model": candidate.model_kind, "evaluation": history}
    write_manifest(store, "v1", fields)
    return sorted(n.rsplit("/", 1)[-1] for n in candidate.files if n.startswith("model/") or n == "pending.parquet")


def refresh(tmp_path: Path, store: LocalStore, prepared: ParentRequest | None) -> Any:
    trainer = Trainer(spool(tmp_path / "spool"))
    if prepared is not None:
        trainer.prepare(store, prepared)
    feed(trainer, partition(tmp_path, "day1.txt", seed=2))
    return trainer.finish(store, request("v2", "v1"))


def test_a_prepared_parent_gives_the_version_a_parent_loaded_at_the_end_gives(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    fetched = first_version(tmp_path, store)
    store.downloads.clear()
    prepared = refresh(tmp_path / "prepared", store, ParentRequest("v1", GateConfig()))
    assert sorted(store.downloads) == fetched  # each once
    assert "parent_wait" in prepared.timings and "load" in prepared.timings
    at_end = refresh(tmp_path / "at-end", store, None)
    assert "parent_wait" not in at_end.timings
    assert prepared.files.keys() == at_end.files.keys()
    for name in prepared.files:  # one training thread, the same seed: the same bytes
        if name.endswith(".npy"):
            assert prepared.files[name]["sha256"] == at_end.files[name]["sha256"], name
    assert prepared.evaluation["checks"] == at_end.evaluation["checks"]
    # the parent's manifest carried the lineage's history to the candidate's gate, either way it was loaded
    [overlap] = [c for c in at_end.evaluation["checks"] if c["name"] == "neighbourhood overlap"]
    assert overlap["history"] == [0.4, 0.6, 0.5] and overlap["floor"]["versions"] == 3


def test_a_parent_prepared_for_other_settings_is_loaded_again(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    fetched = first_version(tmp_path, store)
    store.downloads.clear()
    candidate = refresh(tmp_path / "run", store, ParentRequest("v1", GateConfig(topn=3)))  # the run's gate differs
    assert sorted(store.downloads) == sorted(fetched * 2)  # fetched for the prepared settings, then again
    assert "parent_wait" not in candidate.timings


def test_a_damaged_parent_fails_finish_naming_the_file_and_uploads_nothing(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    first_version(tmp_path, store)
    vectors = store.root / "versions" / "v1" / "model" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(IntegrityError, match=r"vectors\.npy"):
        refresh(tmp_path / "run", store, ParentRequest("v1", GateConfig()))
    assert not (store.root / "versions" / "v2").exists()


class HeldStore(CountingStore):
    """A store whose downloads wait until released: the fetch of a big parent, still running."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fetching, self.release = threading.Event(), threading.Event()

    def get_file(self, key: str, destination: Path) -> None:
        self.fetching.set()
        self.release.wait(10)
        super().get_file(key, destination)


def test_closing_mid_load_stops_the_load_and_removes_the_spool(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "store")
    store.release.set()
    first_version(tmp_path, store)
    store.fetching.clear()
    store.release.clear()
    trainer = Trainer(spool(tmp_path / "spool"))
    trainer.prepare(store, ParentRequest("v1", GateConfig()))
    loading = trainer._loading
    assert loading is not None and store.fetching.wait(10)
    closer = threading.Thread(target=trainer.close)
    closer.start()
    while not loading._stop.is_set():  # the run has ended: only then does the download go on
        closer.join(0.01)
    store.release.set()
    closer.join(20)
    assert not closer.is_alive() and not trainer.dir.exists()
    with pytest.raises(StoppedError, match="loading the parent v1 was stopped"):
        loading.result()
    assert [p.name for p in (tmp_path / "spool").iterdir()] == []


class RolledAwayStore(CountingStore):
    """A store where, as the trainer starts downloading the parent v1, a rollback moves the pointer to v0 and
    gc removes v1 (the seam: another process acting at that moment, on the same real store)."""

    def get_file(self, key: str, destination: Path) -> None:
        if not self.downloads and key.startswith("versions/v1/"):
            self.swap_pointer("v0", self.read_pointer())
            self.delete_version("v1")
        super().get_file(key, destination)


def test_a_parent_removed_under_the_run_is_retryable_and_a_missing_file_of_the_current_one_is_not(
    tmp_path: Path,
) -> None:
    store = RolledAwayStore(tmp_path / "store")
    first_version(tmp_path, store)
    write_manifest(store, "v0", {"version": "v0", "files": {}})
    store.swap_pointer("v1", None)
    with pytest.raises(VersionRemoved, match="v1, the version this run builds on, was removed") as removed:
        refresh(tmp_path / "run", store, ParentRequest("v1", GateConfig()))
    assert "the pointer moved off it (to v0)" in str(removed.value) and "is missing" in str(removed.value)
    assert exit_status(removed.value) == EXIT_RETRYABLE == 75
    assert str(pickle.loads(pickle.dumps(removed.value))) == str(removed.value)  # as it comes back from the actor
    assert not (store.root / "versions" / "v2").exists()

    # The pointer still names the parent, whose manifest lists a file that is gone: a damaged store, not a race.
    store = CountingStore(tmp_path / "damaged")
    first_version(tmp_path / "second", store)
    store.swap_pointer("v1", None)
    (store.root / "versions" / "v1" / "model" / "vectors.npy").unlink()
    with pytest.raises(IntegrityError, match=r"v1 is missing model/vectors\.npy") as damaged:
        refresh(tmp_path / "run2", store, ParentRequest("v1", GateConfig()))
    assert exit_status(damaged.value) == EXIT_REFUSED == 3
