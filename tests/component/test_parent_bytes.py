"""The parent's bytes read once, the new version's written once.

The trainer maps the parent's matrices copy-on-write instead of reading them: the model is the one reading
gives, the vocabulary update still appends in place, training writes never reach the file, and only the pages
touched become the process's own. Saving hashes each file as it writes it (the same bytes as ``np.save``), so
the upload reads nothing again; a local store links those files in rather than copying them, 0600 like its
own, and copies them where it cannot link.
"""

from __future__ import annotations

import collections
import hashlib
import mmap
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gensim.models import FastText, Word2Vec

from jobs.format import mapped
from jobs.format.files import read_rows
from jobs.storage.local import LocalStore
from jobs.storage.publish import sha256_file, upload_version
from jobs.training import model as gmodel
from jobs.training import vocabulary
from jobs.training.parent import populate_matrices
from tests.support.corpora import clustered
from tests.support.models import MORE, SENTENCES, assert_same

MiB = 1 << 20


def resident_private() -> int:
    """Bytes of this process's own (anonymous or copied-on-write) memory: RssAnon."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="maps files on Linux")
@pytest.mark.parametrize("cls", [Word2Vec, FastText])
def test_a_mapped_parent_is_the_read_one_grows_in_place_and_leaves_its_file_alone(cls: type, tmp_path: Path) -> None:
    extra = {"bucket": 3000, "min_n": 2, "max_n": 5} if cls is FastText else {}
    original = cls(SENTENCES, vector_size=12, min_count=2, workers=1, seed=7, epochs=1, **extra)
    gmodel.save(original, tmp_path)
    folder = tmp_path / gmodel.MODEL_DIR
    before = {p.name: sha256_file(p) for p in folder.iterdir()}
    mapped = gmodel.load(folder, spare_rows=None, mapped=True)
    read = gmodel.load(folder, spare_rows=None)
    assert_same(mapped, read, "model")
    assert_same(mapped.wv, read.wv, "wv")
    assert isinstance(mapped.wv.vectors.base.base, mmap.mmap)  # a view of the mapping, not a copy

    size, counts = len(mapped.wv), dict(collections.Counter(w for sentence in MORE for w in sentence))
    for model in (mapped, read):  # the job's update (rows appended in place), then training on new words
        vocabulary.grow(model, counts, len(MORE))
        model.train(MORE, total_examples=len(MORE), epochs=1)
    assert len(mapped.wv) > size
    assert isinstance(mapped.syn1neg.base.base, mmap.mmap)  # grown within the mapping's room, not copied
    assert mapped.wv.index_to_key == read.wv.index_to_key
    for array in ("vectors", "syn1neg", *(("vectors_vocab", "vectors_ngrams") if cls is FastText else ())):
        holder = mapped if array == "syn1neg" else mapped.wv
        other = read if array == "syn1neg" else read.wv
        assert np.array_equal(getattr(holder, array), getattr(other, array)), array  # trained alike, bit for bit
    assert {p.name: sha256_file(p) for p in folder.iterdir()} == before  # copy-on-write: the file never changed

    grown = vocabulary.appended(mapped.syn1neg, np.ones((3, 12), np.float32))
    assert grown.ctypes.data == mapped.syn1neg.ctypes.data and grown.base is mapped.syn1neg.base  # in place


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="maps files on Linux")
def test_only_the_pages_written_become_the_processs_own(tmp_path: Path) -> None:
    rows, dim = 64 * 1024, 256  # 64 MiB
    path = tmp_path / "m.npy"
    np.save(path, np.arange(rows * dim, dtype=np.float32).reshape(rows, dim))
    baseline = resident_private()
    matrix = read_rows(tmp_path, "m", (rows, dim), spare_rows=rows, mapped=True)
    assert float(matrix[rows - 1, dim - 1]) == rows * dim - 1 and float(matrix.sum(dtype=np.float64)) > 0  # all read
    matrix[: rows // 16] += 1  # a sixteenth written
    grown = vocabulary.appended(matrix, np.ones((rows // 16, dim), np.float32))  # and a sixteenth appended
    own = resident_private() - baseline
    assert 7 * MiB < own < 12 * MiB, own  # 8 MiB: the written rows and the appended ones, not the 64 MiB read
    assert np.array_equal(np.load(path)[rows // 16 :], grown[rows // 16 : rows])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="maps files on Linux")
def test_a_run_that_writes_most_pages_has_them_all_copied_ahead_and_the_file_stays(tmp_path: Path) -> None:
    rows, dim = 16 * 1024, 256  # 16 MiB
    path = tmp_path / "m.npy"
    np.save(path, np.arange(rows * dim, dtype=np.float32).reshape(rows, dim))
    before = sha256_file(path)
    matrix = read_rows(tmp_path, "m", (rows, dim), spare_rows=rows, mapped=True)
    baseline = resident_private()
    if not mapped.populate(matrix):
        pytest.skip("this kernel cannot populate a mapping for writing (Linux 5.14 and later)")
    assert 15 * MiB < resident_private() - baseline < 18 * MiB  # every page the process's own, the spare rows not
    assert np.array_equal(matrix, np.load(path))  # the file's values
    matrix[::7] += 1
    assert sha256_file(path) == before  # still copy-on-write

    class Model:  # what populate_matrices reads of a Word2Vec model
        def __init__(self) -> None:
            self.wv, self.syn1neg = type("WV", (), {"vectors": matrix, "__len__": lambda _: rows})(), matrix

    assert populate_matrices(Model(), tokens=rows // 4 - 1, epochs=4) is None  # fewer token-epochs than words
    paging = populate_matrices(Model(), tokens=rows // 4, epochs=4)
    assert paging is not None
    paging.join()


@pytest.mark.parametrize("cls", [Word2Vec, FastText])
def test_save_records_what_np_save_writes_hashed_as_written(cls: type, tmp_path: Path) -> None:
    extra = {"bucket": 2000} if cls is FastText else {}
    model = cls([d.split() for d in clustered(200, seed=1)], vector_size=8, min_count=1, workers=1, epochs=1, **extra)
    recorded = gmodel.save(model, tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(recorded) == files
    for name, entry in recorded.items():
        data = (tmp_path / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
        if name.endswith(".npy"):
            attribute = name.rsplit("/", 1)[1][: -len(".npy")]
            holder = model if attribute in ("syn1neg", "cum_table") else model.wv
            array = holder.expandos["sample_int"] if attribute == "sample_int" else getattr(holder, attribute)
            np.save(tmp_path / "ref.npy", array)
            assert data == (tmp_path / "ref.npy").read_bytes(), name


def test_a_final_upload_links_the_files_into_a_local_store_or_copies_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "a.npy").write_bytes(b"a" * 100_000)
    (out / "ledger.parquet").write_bytes(b"ledger")
    recorded = {"model/a.npy": {"size": 100_000, "sha256": hashlib.sha256(b"a" * 100_000).hexdigest()}}
    store = LocalStore(tmp_path / "store")

    files = upload_version(store, "v1", out, recorded=recorded, final=True)
    assert files == {
        "model/a.npy": recorded["model/a.npy"],
        "ledger.parquet": {"size": 6, "sha256": hashlib.sha256(b"ledger").hexdigest()},
    }
    for name in files:
        stored = tmp_path / "store" / "versions" / "v1" / name
        assert os.stat(stored).st_ino == os.stat(out / name).st_ino  # the same bytes on disk, written once
        assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert not [p for p in (tmp_path / "store").rglob("*.tmp*")]

    upload_version(store, "v2", out)  # not final: copied, as before
    copied = tmp_path / "store" / "versions" / "v2" / "model" / "a.npy"
    assert os.stat(copied).st_ino != os.stat(out / "model" / "a.npy").st_ino
    assert copied.read_bytes() == b"a" * 100_000

    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:  # another filesystem: no link possible
        elsewhere = Path(tempfile.mkdtemp(dir=shm))
        try:
            (elsewhere / "x.bin").write_bytes(b"x" * 1000)
            upload_version(store, "v3", elsewhere, final=True)
            stored = tmp_path / "store" / "versions" / "v3" / "x.bin"
            assert stored.read_bytes() == b"x" * 1000 and os.stat(stored).st_dev != os.stat(elsewhere / "x.bin").st_dev
        finally:
            shutil.rmtree(elsewhere)


def test_a_mapped_hash_is_the_read_hash(tmp_path: Path) -> None:
    for size in (0, 1, (64 << 20) + 3):
        path = tmp_path / f"f{size}"
        path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
        expected = hashlib.sha256(path.read_bytes()).hexdigest()
        assert sha256_file(path, mapped=True) == sha256_file(path) == expected
