"""Small saved models and their digests, training sentences, and a model-equality check, for the tests of the
readers and the model format."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import Word2Vec

from tests.support.corpora import clustered

SMALL = (3_000, 16)


def digest(array: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def saved_model(folder: Path, words: int, dims: int) -> tuple[Path, str]:
    """A saved Word2Vec of ``words`` x ``dims`` (initial vectors, no training needed) and their digest."""
    model = Word2Vec(vector_size=dims, min_count=1, workers=1, seed=3)
    model.build_vocab_from_freq({f"w{i:05d}": words - i for i in range(words)})
    model.save(str(folder / "pretrained.model"))
    return folder / "pretrained.model", digest(model.wv.vectors)


SENTENCES = [doc.split() for doc in clustered(300, seed=3)]


MORE = [doc.split() for doc in clustered(200, seed=4, extra={1: ["novel", "arrival"]})]


GENSIM_ONLY = {"saving", "loaded"}  # lifecycle events gensim's own save() and load() add


def assert_same(ours: Any, theirs: Any, where: str) -> None:
    """Every attribute equal (arrays in value and dtype), except gensim's pickle bookkeeping."""
    names = {n for n in set(vars(ours)) | set(vars(theirs)) if not n.startswith("__")}
    for name in sorted(names - {"wv", "random", "load", "load_fasttext_format"}):
        a, b = getattr(ours, name), getattr(theirs, name)
        label = f"{where}.{name}"
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), label
        elif name == "expandos":
            assert set(a) == set(b), label
            for key in b:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{label}[{key}]"
        elif name == "buckets_word":
            assert len(a) == len(b), label
            assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True)), label
        elif name == "lifecycle_events":
            assert a == [e for e in b if e["event"] not in GENSIM_ONLY], label
        else:
            assert a == b and type(a) is type(b), (label, a, b)
