"""Vectorized tokenizing of Arrow text columns.

Every step is a pyarrow compute kernel or a numpy operation over whole arrays; no Python code runs per
document or per token, which is what makes the tokenizer several times faster than a per-document
``simple_preprocess`` loop.

    >>> import pyarrow as pa
    >>> from shards.tokenize import TokenizerConfig, tokenize
    >>> docs = tokenize(pa.array(["Hello, Wörld!", None]), TokenizerConfig(deaccent=True))
    >>> docs.to_pylist()
    [['hello', 'world']]

Documents (null, empty or without a single token) vanish; documents longer than ``max_sentence_tokens``
(9,999: the longest sentence gensim trains whole) are cut into consecutive pieces of equal length (to one
token), so no token is lost and no piece is left with too little context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.errors import ConfigError
from shards.options import derived, option

#: Letters, with the combining marks that belong to them. Digits and underscores separate tokens.
DEFAULT_TOKEN_PATTERN = r"[\p{L}\p{M}]+"

#: The longest sentence trained whole. gensim trains at most 10,000 words of a batch and silently drops the
#: rest (in iterable mode the rest of a longer sentence; its file reader fills batches past 10,000 words),
#: and the trainer's spool ends each batch with a padding line, so a sentence keeps one word below that.
MAX_SENTENCE_TOKENS = 9_999

_SEPARATOR = "\x1f"  # ASCII unit separator: never part of a token the default pattern accepts
#: ASCII whitespace (where gensim's reader splits tokens) and Unicode's; removed from what a pattern matched.
_WHITESPACE = r"[\t\n\v\f\r \x{85}\p{Z}]+"


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes tokens. Frozen and recorded with every model version."""

    lowercase: bool = option(True, "keep case", flag="--no-lowercase")
    deaccent: bool = option(False, "fold accents (NFKD, drop combining marks)")
    token_pattern: str = option(DEFAULT_TOKEN_PATTERN, "RE2 regex of one token")
    min_token_len: int = option(2, "shortest token kept, in characters")
    max_token_len: int = option(40, "longest token kept, in characters")
    max_sentence_tokens: int = derived(
        MAX_SENTENCE_TOKENS, "gensim's limit on a sentence it trains whole; only tests lower it, to cut sentences"
    )

    def __post_init__(self) -> None:
        if self.min_token_len < 1:
            raise ConfigError(f"min_token_len must be at least 1, got {self.min_token_len}")
        if self.max_token_len < self.min_token_len:
            raise ConfigError(f"max_token_len ({self.max_token_len}) is below min_token_len ({self.min_token_len})")
        if not 1 <= self.max_sentence_tokens <= MAX_SENTENCE_TOKENS:
            raise ConfigError(
                f"max_sentence_tokens must be between 1 and {MAX_SENTENCE_TOKENS}, got {self.max_sentence_tokens}"
            )
        try:
            pc.replace_substring_regex(pa.array([""]), pattern=self.token_pattern, replacement="")
        except pa.ArrowInvalid as exc:
            raise ConfigError(f"token_pattern {self.token_pattern!r} is not a valid RE2 regex: {exc}") from exc
        if _SEPARATOR in self.token_pattern:
            raise ConfigError("token_pattern may not contain the ASCII unit separator (0x1f)")


def normalize(texts: pa.Array | pa.ChunkedArray, config: TokenizerConfig) -> pa.Array | pa.ChunkedArray:
    """Lowercase and fold accents as configured (NFKD, then drop combining marks)."""
    if config.lowercase:
        texts = pc.utf8_lower(texts)
    if config.deaccent:
        texts = pc.utf8_normalize(texts, form="NFKD")
        texts = pc.replace_substring_regex(texts, pattern=r"\p{Mn}+", replacement="")
    return texts


def _split(texts: pa.Array | pa.ChunkedArray, pattern: str) -> pa.ListArray:
    if pattern == DEFAULT_TOKEN_PATTERN:
        # Fast path: blank out runs of anything that is neither a letter, a mark nor a space (few, short
        # matches), then split on the literal space, which is several times cheaper than a regex split.
        spaced = pc.replace_substring_regex(texts, pattern=r"[^\p{L}\p{M} ]+", replacement=" ")
        lists = pc.split_pattern(spaced, pattern=" ")
    else:
        # Any RE2 pattern: keep each match followed by a separator, drop every other character.
        marked = pc.replace_substring_regex(texts, pattern=f"(?s)({pattern})|.", replacement="\\1" + _SEPARATOR)
        lists = pc.split_pattern(marked, pattern=_SEPARATOR)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    return lists


def tokenize(texts: pa.Array | pa.ChunkedArray, config: TokenizerConfig) -> pa.ListArray:
    """Turn a text array (``string``, ``large_string`` or ``string_view``) into a list array of sentences,
    dropping documents with no token."""
    if pa.types.is_string_view(texts.type):  # the string kernels take string and large_string only
        texts = texts.cast(pa.large_string())
    lists = _split(normalize(texts, config), config.token_pattern)
    if lists.null_count:  # null documents (each filter is a pass over every token)
        lists = lists.filter(pc.is_valid(lists))
    values = pc.list_flatten(lists)
    if config.token_pattern != DEFAULT_TOKEN_PATTERN:
        # A pattern may match whitespace, where gensim's reader would split the token again: the counts and the
        # training would see different tokens. So whitespace is stripped from every match.
        values = pc.replace_substring_regex(values, pattern=_WHITESPACE, replacement="")
    parents = pc.list_parent_indices(lists).to_numpy()
    lengths = pc.utf8_length(values)
    keep = pc.and_(pc.greater_equal(lengths, config.min_token_len), pc.less_equal(lengths, config.max_token_len))
    values = values.filter(keep)
    parents = parents[keep.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parents, minlength=len(lists)) if len(parents) else np.zeros(len(lists), np.int64)
    return _assemble(values, counts[counts > 0], config.max_sentence_tokens)


def _assemble(values: pa.Array, doc_lengths: np.ndarray, max_len: int) -> pa.ListArray:
    """Build a list array from token counts per document, cutting documents longer than ``max_len``."""
    pieces = (doc_lengths + max_len - 1) // max_len
    if len(doc_lengths) and pieces.max() > 1:
        # Each document contributes p = ceil(n / max_len) pieces of n // p tokens, the first n % p one longer.
        first = np.repeat(np.cumsum(pieces) - pieces, pieces)
        rank = np.arange(int(pieces.sum())) - first
        doc_lengths = np.repeat(doc_lengths // pieces, pieces) + (rank < np.repeat(doc_lengths % pieces, pieces))
    offsets = np.zeros(len(doc_lengths) + 1, dtype=np.int32)
    np.cumsum(doc_lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def count_words(sentences: pa.ListArray) -> pa.Table:
    """Word counts of a tokenized batch as a two-column table (``word``, ``count``)."""
    counts = pc.value_counts(sentences.flatten())
    words, numbers = counts.field("values"), counts.field("counts")
    # One type in every count table, whatever the input's (each cast, even to the same type, is one more call
    # that lets go of the GIL and waits for it again).
    if words.type != pa.string():
        words = pc.cast(words, pa.string())
    if numbers.type != pa.int64():
        numbers = pc.cast(numbers, pa.int64())
    return pa.table({"word": words, "count": numbers})


def to_lines(sentences: pa.ListArray) -> bytes:
    """Serialize sentences as gensim ``LineSentence`` text: space-separated tokens, one sentence a line."""
    return line_view(sentences).tobytes()


def line_view(sentences: pa.ListArray) -> np.ndarray:
    """:func:`to_lines` without the copy: a ``uint8`` view of the Arrow buffer holding the text, which Ray
    moves into its object store as it is (numpy arrays are serialized out of band, not pickled)."""
    if len(sentences) == 0:
        return np.zeros(0, np.uint8)
    text = sentences.type.value_type  # string or large_string: the separators must be of the same type
    joined = pc.binary_join(sentences, pa.scalar(" ", text))
    lines = pc.binary_join_element_wise(joined, pa.scalar("", text), pa.scalar("\n", text))
    _, offsets_buf, data = lines.buffers()
    width = np.int64 if pa.types.is_large_string(text) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[lines.offset : lines.offset + len(lines) + 1]
    return np.frombuffer(data, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
