"""A deterministic synthetic corpus, laid out as the refresh job finds real data: Hive-style Parquet partitions.

    >>> from tests.benchmarks.corpus import CorpusSpec, ensure
    >>> root = ensure(CorpusSpec(tokens=2_000_000), Path(".bench/corpora"))   # doctest: +SKIP
    >>> sorted(p.name for p in root.rglob("*.parquet"))[:2]                  # doctest: +SKIP
    ['part-00000.parquet', 'part-00001.parquet']

What it looks like, and why:

* a vocabulary of ``vocabulary`` pseudo-words built from syllables; frequent words are short (Zipf's law of
  abbreviation), about 2% carry an accented letter and 1% are hyphenated compounds, and none is longer than
  15 letters, so gensim's ``simple_preprocess`` (``max_len=15``) and the job's tokenizer keep the same words;
* word frequencies follow a Zipf–Mandelbrot law, ``p(rank) ∝ 1 / (rank + 2.7) ** zipf``, as natural text does:
  a few hundred words make half the tokens, and the rarest ranks straddle ``min_count``;
* one document per row, its length in words lognormal around ``mean_document`` (median ~17, a long right tail)
  plus a rare very long one (up to 15,000 words, past gensim's 10,000-word limit), so the tokenizer's
  splitting path runs;
* punctuation, sentence capitals, proper nouns, quotes, possessives and numbers sprinkled in, so tokenizing
  has real work to do (and numbers are dropped by both tokenizers).

Every partition is generated from its own seed (``seed``, partition index), so a corpus is the same on every
machine and every run. :func:`ensure` caches corpora by their parameters: a rerun finds the folder and skips
generation; a half-written corpus is never found, as it is renamed into place only once complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

FIRST_DAY = dt.date(2026, 1, 1)
SPEC_FILE = "_corpus.json"  # a leading underscore: partition discovery ignores it
GENERATOR = 1  # part of every cache key: raise it when a change here changes what a spec generates

_ONSETS = ["", *"b c d f g h k l m n p r s t v w z br ch cl dr fl gr kr pl pr sh sk sl st str th tr".split()]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ou", "ai", "ea", "y"]
_CODAS = ["", "", "", "n", "r", "s", "l", "m", "t", "nd", "st", "rk", "ng", "x"]
_ACCENTED = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "y": "ÿ"}
_MAX_WORD = 15  # simple_preprocess's default max_len

# What may follow a word: (text, probability). A period ends a sentence: the next word is capitalized.
_SUFFIXES = [
    ("", 0.860),
    (",", 0.065),
    (".", 0.045),
    (";", 0.004),
    (":", 0.004),
    ("?", 0.004),
    ("!", 0.003),
    ("'s", 0.008),
    ('"', 0.004),
    (")", 0.003),
]
_PREFIXES = [("", 0.990), ('"', 0.006), ("(", 0.004)]
_NUMBERS = ["1999", "2026", "42", "3.14", "10%", "$5", "7th", "100,000", "24/7", "no.1"]
_NUMBER_RATE = 0.01
_PROPER_NOUN_RATE = 0.03  # share of the vocabulary always written with a capital
_LONG_DOCUMENT_RATE = 1e-4


@dataclass(frozen=True)
class CorpusSpec:
    """The parameters a corpus is a pure function of (and cached by)."""

    tokens: int = 20_000_000
    vocabulary: int = 100_000
    partition_tokens: int = 500_000
    partitions_per_day: int = 4
    zipf: float = 1.0
    mean_document: float = 20.0
    seed: int = 2026

    def __post_init__(self) -> None:
        if self.tokens < self.partition_tokens or self.partition_tokens < 1_000:
            raise ValueError(f"need tokens ({self.tokens:,}) >= partition_tokens ({self.partition_tokens:,}) >= 1,000")
        if self.vocabulary < 1_000:
            raise ValueError(f"vocabulary must be at least 1,000 words, got {self.vocabulary:,}")

    @property
    def partitions(self) -> int:
        return -(-self.tokens // self.partition_tokens)

    def key(self) -> str:
        """A short name unique to these parameters."""
        blob = json.dumps({**dataclasses.asdict(self), "generator": GENERATOR}, sort_keys=True).encode()
        return f"{self.tokens // 1_000_000}M-{hashlib.sha256(blob).hexdigest()[:10]}"

    def partition_path(self, index: int) -> str:
        day = FIRST_DAY + dt.timedelta(days=index // self.partitions_per_day)
        return f"dt={day}/part-{index % self.partitions_per_day:05d}.parquet"


def ensure(spec: CorpusSpec, cache: Path) -> Path:
    """The corpus folder for ``spec`` under ``cache``, generated first unless an earlier run left it there."""
    root = cache / spec.key()
    if (root / SPEC_FILE).exists():
        log.info("corpus %s: cached", root)
        return root
    staging = cache / f".{spec.key()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    vocabulary = make_vocabulary(spec)
    for index in range(spec.partitions):
        remaining = spec.tokens - index * spec.partition_tokens
        texts = make_documents(spec, vocabulary, index, min(spec.partition_tokens, remaining))
        path = staging / spec.partition_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": texts}), path, row_group_size=65_536)
        if index % 10 == 9 or index == spec.partitions - 1:
            log.info("corpus %s: %d/%d partitions written", root.name, index + 1, spec.partitions)
    (staging / SPEC_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=2, sort_keys=True))
    staging.rename(root)
    return root


def make_vocabulary(spec: CorpusSpec) -> pa.Array:
    """``spec.vocabulary`` distinct lowercase pseudo-words, most frequent (shortest) first."""
    rng = np.random.default_rng([spec.seed, 0])
    words: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < spec.vocabulary:
        for syllables in rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5], size=spec.vocabulary):
            word = "".join(
                _ONSETS[rng.integers(len(_ONSETS))]
                + _VOWELS[rng.integers(len(_VOWELS))]
                + _CODAS[rng.integers(len(_CODAS))]
                for _ in range(syllables)
            )
            if 2 <= len(word) <= _MAX_WORD and word not in words:
                words.add(word)
                ordered.append(word)
    ordered = ordered[: spec.vocabulary]
    # Frequent words are short: sort by length, jittered so every length spreads over many ranks.
    jitter = rng.normal(0, 1.5, size=len(ordered))
    ordered = [ordered[i] for i in np.argsort([len(w) for w in ordered] + jitter, kind="stable")]
    for i in rng.choice(len(ordered), size=len(ordered) // 50, replace=False):
        vowels = [j for j, c in enumerate(ordered[i]) if c in _ACCENTED]
        if vowels:
            j = vowels[rng.integers(len(vowels))]
            ordered[i] = ordered[i][:j] + _ACCENTED[ordered[i][j]] + ordered[i][j + 1 :]
    for i in rng.choice(np.arange(200, len(ordered)), size=len(ordered) // 100, replace=False):
        head = ordered[int(rng.integers(len(ordered)))][:7]
        ordered[i] = f"{head}-{ordered[i][:7]}"
    return pa.array(ordered, pa.string())


def make_documents(spec: CorpusSpec, vocabulary: pa.Array, index: int, tokens: int) -> pa.Array:
    """About ``tokens`` words of documents for partition ``index``, built with array kernels (no per-word loop)."""
    rng = np.random.default_rng([spec.seed, 1, index])
    lengths = _document_lengths(rng, spec.mean_document, tokens)
    n = int(lengths.sum())

    ranks = np.arange(1, len(vocabulary) + 1, dtype=np.float64)
    cdf = np.cumsum((ranks + 2.7) ** -spec.zipf)
    ids = np.searchsorted(cdf, rng.random(n) * cdf[-1])
    words = vocabulary.take(pa.array(ids.astype(np.int32)))

    suffix_codes = rng.choice(len(_SUFFIXES), size=n, p=[p for _, p in _SUFFIXES])
    starts = np.zeros(n, dtype=bool)
    starts[np.cumsum(lengths)[:-1]] = True
    starts[0] = True
    sentence_start = starts.copy()
    sentence_start[1:] |= suffix_codes[:-1] == 2  # after a period
    proper = (ids % int(1 / _PROPER_NOUN_RATE)) == 7
    words = pc.if_else(pa.array(sentence_start | proper), pc.utf8_capitalize(words), words)

    is_number = rng.random(n) < _NUMBER_RATE
    numbers = pa.array(_NUMBERS).take(pa.array(rng.integers(len(_NUMBERS), size=n)))
    words = pc.if_else(pa.array(is_number), numbers, words)

    suffixes = pa.array([s for s, _ in _SUFFIXES]).take(pa.array(suffix_codes))
    ends = np.append(starts[1:], True)
    suffixes = pc.if_else(pa.array(ends), pa.scalar("."), suffixes)  # every document ends a sentence
    prefixes = pa.array([s for s, _ in _PREFIXES]).take(
        pa.array(rng.choice(len(_PREFIXES), size=n, p=[p for _, p in _PREFIXES]))
    )
    surface = pc.binary_join_element_wise(prefixes, words, suffixes, "")

    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    documents = pa.ListArray.from_arrays(pa.array(offsets), surface)
    return pc.binary_join(documents, " ")


def _document_lengths(rng: np.random.Generator, mean: float, tokens: int) -> np.ndarray:
    """Words per document: lognormal (sigma 0.55) with the given mean, plus rare 500-15,000-word documents."""
    sigma = 0.55
    mu = np.log(mean) - sigma**2 / 2
    count = int(tokens / mean * 1.1) + 16
    lengths = np.maximum(1, rng.lognormal(mu, sigma, size=count).round().astype(np.int64))
    long = rng.random(count) < _LONG_DOCUMENT_RATE
    lengths[long] = rng.integers(500, 15_000, size=int(long.sum()))
    total = np.cumsum(lengths)
    keep = int(np.searchsorted(total, tokens)) + 1
    lengths = lengths[:keep]
    lengths[-1] -= int(lengths.sum()) - tokens  # exactly `tokens` words
    return lengths[lengths > 0]
