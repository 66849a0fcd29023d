"""Tiny corpora with known structure, generated inside the tests (nothing is downloaded).

``clustered`` makes sentences in which the words of one cluster share that cluster's context words, so a
trained model should put every word next to its cluster mates; a word generated "like cluster k" in a later
partition should land next to cluster k's words.
"""

from __future__ import annotations

import random

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def word(prefix: str, i: int) -> str:
    """A pronounceable, digit-free pseudo-word (the default tokenizer drops digits)."""
    return prefix + LETTERS[i // 26 % 26] + LETTERS[i % 26]


def cluster_words(cluster: int, n: int = 8) -> list[str]:
    return [word(f"c{LETTERS[cluster]}x", i) for i in range(n)]


def clustered(
    sentences: int,
    clusters: int = 4,
    seed: int = 0,
    extra: dict[int, list[str]] | None = None,
    active: list[int] | None = None,
    members: int = 8,
) -> list[str]:
    """Documents where cluster k's ``members`` words (plus ``extra[k]``) co-occur with k's own context words;
    with ``active``, only those clusters speak (a topic that comes and goes keeps its words). Many members
    make many equally near neighbours, whose order each update reshuffles, as in a large vocabulary."""
    rng = random.Random(seed)
    contexts = [[word(f"k{LETTERS[c]}q", i) for i in range(6)] for c in range(clusters)]
    words = [cluster_words(c, members) + (extra or {}).get(c, []) for c in range(clusters)]
    speaking = list(range(clusters)) if active is None else active
    docs = []
    for _ in range(sentences):
        c = rng.choice(speaking)
        tokens = []
        for _ in range(12):
            tokens.append(rng.choice(words[c]) if rng.random() < 0.5 else rng.choice(contexts[c]))
        docs.append(" ".join(tokens))
    return docs
