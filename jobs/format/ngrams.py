"""FastText's character n-gram buckets, vectorized: equal to gensim's ``ft_ngram_hashes`` without gensim.

The trainer needs every word's buckets after a vocabulary update (``FastTextKeyedVectors.buckets_word``),
readers need an unknown word's buckets to compose its vector (:meth:`jobs.keyed.WordVectors.get_vector`).
gensim computes them one word at a time in Python; here a whole block of words is hashed with numpy.

    >>> flat, per_word = ngram_hashes(["night", "nights"], min_n=3, max_n=6, bucket=2_000_000)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def ngram_buckets(
    words: list[str] | pa.Array, min_n: int, max_n: int, bucket: int, block: int = 65_536
) -> list[np.ndarray]:
    """Each word's character n-gram buckets, exactly as gensim's ``ft_ngram_hashes`` (Facebook's FNV-1a hash
    with its signed-char quirk over the UTF-8 bytes of ``<word>``), but vectorized, ``block`` words at a time
    (the per-character temporaries of a whole vocabulary would be several times its buckets).

    Returns one uint32 array per word (views of a buffer per block), the layout of
    ``FastTextKeyedVectors.buckets_word``.
    """
    out: list[np.ndarray] = []
    for first in range(0, len(words), block):
        flat, per_word = ngram_hashes(words[first : first + block], min_n, max_n, bucket)
        ends = np.cumsum(per_word).tolist()
        out += [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    return out


def ngram_hashes(words: list[str] | pa.Array, min_n: int, max_n: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram buckets of every word, concatenated in gensim's order (by start character, then length),
    and how many each word has."""
    text = pa.array(words, pa.large_string()) if not isinstance(words, pa.Array) else words.cast(pa.large_string())
    n_words = len(text)
    if n_words == 0 or bucket == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(n_words, dtype=np.int64)
    lt, gt, sep = (pa.scalar(s, pa.large_string()) for s in ("<", ">", ""))
    ext = pc.binary_join_element_wise(lt, text, gt, sep)
    offsets = np.frombuffer(ext.buffers()[1], dtype=np.int64, count=n_words + 1, offset=ext.offset * 8)
    data = np.frombuffer(ext.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    starts = np.flatnonzero((data & 0xC0) != 0x80)  # the first byte of every character
    n_chars = len(starts)
    chars = pc.utf8_length(text).to_numpy().astype(np.int64) + 2  # with '<' and '>'
    last = np.cumsum(chars)
    first = last - chars
    remaining = np.repeat(last, chars) - np.arange(n_chars)  # characters from this one to its word's end
    signed = data.view(np.int8).astype(np.uint32)  # Facebook's hash sign-extends each byte
    char_len = np.diff(np.append(starts, len(data)))
    # planes[b]: byte b of every character (0 where it has fewer bytes), padded so that shifted views fit
    planes: list[tuple[np.ndarray, Any]] = []
    for b in range(int(char_len.max())):
        plane = np.zeros(n_chars + max_n, dtype=np.uint32)
        if b == 0:
            plane[:n_chars] = signed[starts]
            planes.append((plane, None))
        else:
            multi = np.flatnonzero(char_len > b)
            plane[multi] = signed[starts[multi] + b]
            mask = np.zeros(n_chars + max_n, dtype=bool)
            mask[multi] = True
            planes.append((plane, mask))
    emitted = np.clip(remaining - min_n + 1, 0, max_n - min_n + 1)  # n-grams starting at each character
    skip = np.zeros(n_chars, dtype=bool)  # gensim emits no 1-gram for '<' and '>'
    if min_n == 1:
        skip[first] = skip[last - 1] = True
        emitted -= skip
    base = np.cumsum(emitted) - emitted
    flat = np.empty(int(emitted.sum()), dtype=np.uint32)
    h = np.full(n_chars, 2166136261, dtype=np.uint32)
    scratch = np.empty(n_chars, dtype=np.uint32)
    prime, modulus = np.uint32(16777619), np.uint32(bucket)
    for n in range(1, max_n + 1):
        window = slice(n - 1, n - 1 + n_chars)  # the n-th character of the n-gram starting at each character
        for plane, mask in planes:
            if mask is None:
                np.bitwise_xor(h, plane[window], out=h)
                np.multiply(h, prime, out=h)
            else:
                np.bitwise_xor(h, plane[window], out=scratch)
                np.multiply(scratch, prime, out=scratch)
                np.copyto(h, scratch, where=mask[window])
        if n >= min_n:
            keep = remaining >= n
            if n == 1:
                keep &= ~skip
            at = base + (n - min_n) - (skip if min_n == 1 and n > 1 else 0)
            flat[at[keep]] = h[keep] % modulus
    return flat, np.add.reduceat(emitted, first)
