"""Small saved models and their digests, for the readers' tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import Word2Vec

SMALL = (3_000, 16)


def digest(array: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def saved_model(folder: Path, words: int, dims: int) -> tuple[Path, str]:
    """A saved Word2Vec of ``words`` x ``dims`` (initial vectors, no training needed) and their digest."""
    model = Word2Vec(vector_size=dims, min_count=1, workers=1, seed=3)
    model.build_vocab_from_freq({f"w{i:05d}": words - i for i in range(words)})
    model.save(str(folder / "pretrained.model"))
    return folder / "pretrained.model", digest(model.wv.vectors)
