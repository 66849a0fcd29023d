"""Exact epochs: every spooled token trained once per epoch at any thread count, at the rate the run asked for.

Real gensim on tiny spools that gensim's own ``corpus_file`` mode trains partly twice and partly never (words
per byte that vary along the file, long documents at the end, multi-byte scripts). Each spool holds words that
occur in one place only; every one of them must move from its initial value (same seed, untrained model), and
gensim's own count of the raw words each epoch read must equal the spooled tokens.
"""

from __future__ import annotations

import collections
import copy
import inspect
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from gensim.models import fasttext_corpusfile, word2vec_corpusfile
from gensim.models.callbacks import CallbackAny2Vec
from scipy.special import expit

from jobs.config import TrainingConfig
from jobs.errors import TrainingError
from jobs.training import epochs
from jobs.training import model as gmodel
from jobs.training.spool import BATCH_RAW_WORDS, BATCH_WORDS, PAD, Layout, Spool, line_lengths
from shards.tokenize import TokenizerConfig, to_lines, tokenize

LETTERS = "abcdefghijklmnopqrstuvwxyz"
THREADS = [1, 2, 3, 4, 8]


def words(n: int, length: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(LETTERS) for _ in range(length)) for _ in range(n)]


def sentences(n: int, vocabulary: list[str], rng: random.Random, length: int = 20) -> list[str]:
    return [" ".join(rng.choice(vocabulary) for _ in range(length)) for _ in range(n)]


def unique_places(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    """Three partitions; words unique to the first, middle and last sentence and to the last partition."""
    common = words(200, 6, rng)
    docs = sentences(4500, common, rng)
    docs[0] += " uniquefirst"
    docs[len(docs) // 2] += " uniquemiddle"
    last = [*sentences(300, common, rng), "onlyinthelastpartition " + " ".join(rng.choices(common, k=10))]
    last[-1] += " uniquelast"
    return [docs[:2000], docs[2000:], last], ["uniquefirst", "uniquemiddle", "uniquelast", "onlyinthelastpartition"]


def mixed_density(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    """The first half of the bytes 2-letter words, the second half 12-letter words (each word unique to its
    half): gensim's byte offsets and word quotas disagree most here."""
    short, long_ = words(300, 2, rng), words(400, 12, rng)
    return [sentences(3500, short, rng), sentences(800, long_, rng)], [*short[:20], *long_[-20:]]


def long_documents_last(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    """Short sentences, then a last partition holding one 30,000-token document (cut by the tokenizer)."""
    common = words(200, 5, rng)
    tail = words(50, 8, rng)
    document = " ".join(rng.choice(common) for _ in range(29_950)) + " " + " ".join(tail)
    return [sentences(3000, common, rng), [document]], tail


def scripts(rng: random.Random) -> tuple[list[list[str]], list[str]]:
    """CJK, Cyrillic and emoji lines (3 and 4 bytes a character) after ASCII ones."""
    ascii_words = words(100, 4, rng)
    cjk = ["".join(rng.choice("日本語中文字漢語東京大学") for _ in range(3)) + f"{i:02d}" for i in range(100)]
    emoji = ["".join(rng.choice("😀🎉👍🏽🚀🌍") for _ in range(2)) + f"e{i:02d}" for i in range(100)]
    cyrillic = ["".join(rng.choice("абвгдежзиклмн") for _ in range(5)) for _ in range(100)]
    return [sentences(2500, ascii_words, rng), sentences(2500, cjk + emoji + cyrillic, rng)], [
        cjk[0],
        cjk[-1],
        emoji[0],
        emoji[-1],
        cyrillic[-1],
    ]


Spooled = tuple[Layout, collections.Counter[str], list[str]]
SPOOLS: dict[str, Callable[[random.Random], tuple[list[list[str]], list[str]]]] = {
    "unique-places": unique_places,
    "mixed-density": mixed_density,
    "long-documents-last": long_documents_last,
    "scripts": scripts,
}


def spool_of(folder: Path, partitions: list[list[str]]) -> tuple[Layout, collections.Counter[str]]:
    """Spool partitions as the trainer does: tokenized (any non-space run is a token), one write each."""
    tokenizer = TokenizerConfig(token_pattern=r"\S+", min_token_len=1)
    spool = Spool(folder / "corpus.txt")
    counts: collections.Counter[str] = collections.Counter()
    for i, docs in enumerate(partitions):
        batch = tokenize(pa.array(docs), tokenizer)
        _lines, tokens = spool.write(to_lines(batch), f"part-{i}")
        assert tokens == len(batch.values)
        counts.update(str(w) for w in batch.values.to_pylist())
    return spool.close(), counts


def build(config: TrainingConfig, counts: collections.Counter[str]) -> tuple[Any, np.ndarray]:
    model = gmodel.create(config)
    gmodel.grow_vocabulary(model, dict(counts), sentences=1)
    vectors = model.wv.vectors_vocab if config.model == "fasttext" else model.wv.vectors
    return model, vectors.copy()


@pytest.fixture(scope="module", params=list(SPOOLS))
def spool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Spooled:
    partitions, unique = SPOOLS[request.param](random.Random(7))
    layout, counts = spool_of(tmp_path_factory.mktemp(request.param), partitions)
    assert all(counts[w] >= 1 for w in unique)
    return layout, counts, unique


def test_the_gensim_loops_relied_on_are_the_installed_ones() -> None:
    """Fails loudly when a gensim release changes what exact training calls (pyproject allows gensim 4.4)."""
    epochs.check_gensim()
    shared = ["model", "corpus_file", "offset", "_cython_vocab", "_cur_epoch", "_expected_examples"]
    shared += ["_expected_words", "_work"]
    assert list(inspect.signature(word2vec_corpusfile.train_epoch_cbow).parameters) == [
        *shared,
        "_neu1",
        "compute_loss",
    ]
    assert list(inspect.signature(word2vec_corpusfile.train_epoch_sg).parameters) == [*shared, "_neu1", "compute_loss"]
    assert list(inspect.signature(fasttext_corpusfile.train_epoch_cbow).parameters) == [*shared, "_neu1"]
    assert list(inspect.signature(fasttext_corpusfile.train_epoch_sg).parameters) == [*shared, "_l1"]
    assert word2vec_corpusfile.CORPUSFILE_VERSION == 1


def test_the_spool_is_whole_batches_of_gensims_size(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = [*sentences(700, words(50, 3, rng), rng, length=37), " ".join(["long"] * 10_000)]
    spool = Spool(tmp_path / "corpus.txt")
    assert spool.write("\n".join(lines[:400]).encode(), "part-0") == (400, 400 * 37)  # no final newline
    # ... and a sentence one token too long, as an old replay reservoir may hold: cut in two
    assert spool.write(("\n".join(lines[400:]) + "\n").encode(), "part-1") == (302, 300 * 37 + 10_000)
    layout = spool.close()
    data = layout.path.read_bytes()
    assert layout.tokens == sum(len(line.split()) for line in lines)
    assert (layout.words <= BATCH_WORDS).all() and layout.words.min() > 0
    for i, offset in enumerate(layout.offsets):
        end = layout.offsets[i + 1] if i + 1 < layout.batches else len(data)
        batch = data[offset:end].splitlines()
        assert batch[-1].split() == [PAD] * (BATCH_RAW_WORDS - layout.words[i])  # exactly one padding line
        assert sum(len(line.split()) for line in batch[:-1]) == layout.words[i]
        assert not any(line.startswith(PAD) for line in batch[:-1])
    assert [len(line.split()) for line in data.splitlines() if line.startswith(b"long")] == [5_000, 5_000]


def test_tokens_are_counted_as_gensims_reader_splits_them() -> None:
    text = b"a b\tc\r\n\n  d\x0b\x0ce  f \xe6\x97\xa5\xe6\x9c\xac\xc2\xa0x\n"
    assert (
        line_lengths(np.frombuffer(text, np.uint8)).tolist() == [len(line.split()) for line in text.split(b"\n")][:-1]
    )


@pytest.mark.parametrize("threads", THREADS)
def test_every_spooled_token_is_trained_once_per_epoch(spool: Spooled, threads: int) -> None:
    layout, counts, unique = spool
    config = TrainingConfig(vector_size=8, min_count=1, sample=0, epochs=2)
    model, initial = build(config, counts)
    outcome = gmodel.train(model, layout, config, threads)
    assert outcome.trained == [sum(counts.values())] * 2
    assert outcome.summary() == f"trained {sum(counts.values()):,} of {sum(counts.values()):,} tokens per epoch"
    assert outcome.threads == threads
    index = model.wv.key_to_index
    assert [w for w in unique if np.array_equal(model.wv.vectors[index[w]], initial[index[w]])] == []


@pytest.mark.parametrize(
    ("kind", "sg", "threads"), [("word2vec", True, 3), ("fasttext", False, 4), ("fasttext", True, 2)]
)
def test_skip_gram_and_fasttext_train_every_token(tmp_path: Path, kind: str, sg: bool, threads: int) -> None:
    partitions, unique = unique_places(random.Random(11))
    layout, counts = spool_of(tmp_path, partitions)
    config = TrainingConfig(model=kind, sg=sg, vector_size=8, min_count=1, sample=0, epochs=1, bucket=2000)
    model, initial = build(config, counts)
    outcome = gmodel.train(model, layout, config, threads)
    assert outcome.trained == [sum(counts.values())]
    vectors = model.wv.vectors_vocab if kind == "fasttext" else model.wv.vectors
    index = model.wv.key_to_index
    assert [w for w in unique if np.array_equal(vectors[index[w]], initial[index[w]])] == []


class Snapshots(CallbackAny2Vec):  # type: ignore[misc]
    """Output-layer rows of the probe words at the start and at the end of every epoch."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.taken = rows, []

    def on_train_begin(self, model: object) -> None:
        self.taken.append(model.syn1neg[self.rows].copy())  # type: ignore[attr-defined]

    def on_epoch_end(self, model: object) -> None:
        self.taken.append(model.syn1neg[self.rows].copy())  # type: ignore[attr-defined]


#: In CBOW with negative sampling, a target whose output row is still ~0 gets the update
#: (1 - sigmoid(0)) * alpha * context; gensim's sigmoid table evaluates 0 at its entry 498 of 1000.
POSITIVE_GRADIENT = 1 - float(expit((498 / 1000 * 2 - 1) * 6))


@pytest.mark.parametrize("threads", [1, 4])
def test_the_learning_rate_falls_from_start_to_min_alpha(tmp_path: Path, threads: int) -> None:
    """Measured, not assumed: probe sentences "a y" spread over the spool, where y is never drawn as a negative
    sample and a's vector is locked, so each epoch moves y's output row by exactly
    POSITIVE_GRADIENT · alpha · vector(a): the rate of the batch the probe sits in."""
    rng = random.Random(5)
    filler = words(150, 5, rng)
    docs, probes = [], []
    for i in range(6000):
        if i % 150 == 0 or i == 5999:
            probes.append((f"probea{i:04d}", f"probey{i:04d}"))
            docs.append(" ".join(probes[-1]))
        docs.append(" ".join(rng.choice(filler) for _ in range(20)))
    docs.append(" ".join(("probealast", "probeylast")))  # the very last sentence
    probes.append(("probealast", "probeylast"))
    layout, counts = spool_of(tmp_path, [docs])
    start, end, n_epochs = 0.025, 0.0001, 2
    config = TrainingConfig(vector_size=16, min_count=1, sample=0, epochs=n_epochs, alpha=start, min_alpha=end)
    model = gmodel.create(config)
    gmodel.grow_vocabulary(model, dict(counts), sentences=len(docs))
    a = np.array([model.wv.key_to_index[p[0]] for p in probes])
    y = np.array([model.wv.key_to_index[p[1]] for p in probes])
    for row in y:
        model.wv.set_vecattr(int(row), "count", 0)  # never a negative sample
    model.make_cum_table()
    model.wv.vectors_lockf = np.ones(len(model.wv), dtype=np.float32)
    model.wv.vectors_lockf[a] = 0.0
    context = model.wv.vectors[a].copy()
    snapshots = Snapshots(y)
    outcome = gmodel.train(model, layout, config, threads, callbacks=(snapshots,))
    assert outcome.trained == [layout.tokens] * n_epochs

    measured = np.array(
        [
            ((after - before) * context).sum(axis=1) / (context * context).sum(axis=1) / POSITIVE_GRADIENT
            for before, after in zip(snapshots.taken, snapshots.taken[1:], strict=False)
        ]
    )  # [epoch, probe]
    data = layout.path.read_bytes()
    batch = np.searchsorted(layout.offsets, [data.index(f"{p[0]} {p[1]}\n".encode()) for p in probes], "right") - 1
    runs = epochs.split_evenly(layout, threads)
    assert len(runs) == threads
    step = max((start - end) / (n_epochs * len(r)) for r in runs)  # the rate's fall over one batch
    assert abs(measured[0, 0] - start) < 1e-5  # the first batch of the run trains at the start rate
    assert 0 < measured[-1, -1] - end <= step + 1e-5  # the last within one batch of the end rate
    for run in runs:  # every thread: its own line from start to end, no jumps
        mine = (batch >= run.start) & (batch < run.stop)
        for epoch in range(n_epochs):
            progress = (epoch * len(run) + batch[mine] - run.start) / (n_epochs * len(run))
            np.testing.assert_allclose(measured[epoch, mine], start - (start - end) * progress, atol=2e-5)
        assert measured[-1, mine].min() - end <= step + 1e-5


def test_a_range_no_thread_trains_fails_with_both_counts(tmp_path: Path) -> None:
    partitions, _ = unique_places(random.Random(2))
    layout, counts = spool_of(tmp_path, partitions)
    config = TrainingConfig(vector_size=8, min_count=1, epochs=2)
    model, _ = build(config, counts)

    def skip_the_last_batch(layout: Layout, threads: int) -> list[range]:
        return [range(r.start, r.stop - (r.stop == layout.batches)) for r in epochs.split_evenly(layout, threads)]

    missed = int(layout.words[-1])
    with pytest.raises(TrainingError, match=f"epoch 1 trained {layout.tokens - missed:,} of {layout.tokens:,}"):
        gmodel.train(model, layout, config, 2, split=skip_the_last_batch)


@pytest.mark.parametrize("kind", ["word2vec", "fasttext"])
def test_the_loops_map_of_the_spools_own_words_trains_as_the_whole_vocabulary(tmp_path: Path, kind: str) -> None:
    """A model four times the spool's vocabulary: the loops' map of the spool's words alone gives the same
    vectors, bit for bit, and the same words reaching the network; a map missing a word skips that word."""
    layout, counts = spool_of(tmp_path, unique_places(random.Random(5))[0])
    config = TrainingConfig(model=kind, vector_size=8, min_count=1, sample=0, epochs=2, bucket=2000)
    model = gmodel.create(config)
    unused = {f"unused{i}": 1 for i in range(3 * len(counts))}
    gmodel.grow_vocabulary(model, {**dict(counts), **unused}, sentences=1)
    whole, spooled, missing = (copy.deepcopy(model) for _ in range(3))
    rows = {word: model.wv.key_to_index[word] for word in counts}
    outcomes = [
        gmodel.train(whole, layout, config, 1),
        gmodel.train(spooled, layout, config, 1, spooled=rows),
        gmodel.train(missing, layout, config, 1, spooled={w: r for w, r in rows.items() if w != "uniquemiddle"}),
    ]
    assert [o.trained for o in outcomes] == [[sum(counts.values())] * 2] * 3
    assert outcomes[1].effective == outcomes[0].effective == [sum(counts.values())] * 2
    assert outcomes[2].effective == [sum(counts.values()) - counts["uniquemiddle"]] * 2
    for name in ("vectors", "vectors_vocab") if kind == "fasttext" else ("vectors",):
        assert np.array_equal(getattr(spooled.wv, name), getattr(whole.wv, name))
    assert np.array_equal(spooled.syn1neg, whole.syn1neg)
    row = whole.wv.key_to_index["uniquemiddle"]
    assert not np.array_equal(missing.wv.vectors[row], whole.wv.vectors[row])
