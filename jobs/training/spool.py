"""The spooled corpus, laid out in whole batches so that gensim's file reader trains every token of it.

gensim's per-thread reader (``CythonLineSentence.next_batch``) fills a batch with sentences until it holds
*more* than 10,000 words, but its training loop stops at 10,000 words (``prepare_c_structures_for_batch``): the
rest of the batch is silently dropped. So the spool is written as a sequence of batches, each exactly as the
reader will cut it: whole sentences holding at most 9,999 words, then one padding line of ``PAD`` tokens that
brings the batch to exactly 10,001 raw words. The padding token is an invalid UTF-8 byte, which no vocabulary
word can be (gensim stores words as UTF-8), so it never trains and never counts as an effective word, and no
batch reaches 10,000 effective words. A reader started at a batch's first byte therefore reads whole batches
of 10,001 raw words each, and training a range of batches trains every sentence in it exactly once.

    spool = Spool(folder / "corpus.txt")
    spool.write(b"first sentence\\nsecond one\\n", source="part-0.parquet")
    (2, 4)
    layout = spool.close()
    layout.tokens, len(layout.words)
    (4, 1)

Tokens are counted here as gensim's C++ reader splits them (runs of bytes other than ASCII whitespace), so
the trainer can check them against the tokenizer's own count. Sentences longer than 9,999 tokens (the
an old replay reservoir's, cut at 10,000) are cut into consecutive pieces.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.errors import TrainingError

#: gensim's ``MAX_SENTENCE_LEN`` / ``MAX_WORDS_IN_BATCH``: the most effective words one batch trains.
GENSIM_BATCH_WORDS = 10_000
#: The most real words a batch holds, so that it never reaches gensim's limit.
BATCH_WORDS = GENSIM_BATCH_WORDS - 1
#: Raw words of every batch, padding included: one more than gensim's limit ends the reader's batch.
BATCH_RAW_WORDS = GENSIM_BATCH_WORDS + 1
#: Not valid UTF-8 on its own, so never the key of a vocabulary word.
PAD = b"\xff"

_CHUNK = 64 << 20  # bytes scanned at once, bounding the scan's temporary arrays


@dataclass(frozen=True)
class Mark:
    """Where a spool stood, to go back to (see :meth:`Spool.rewind`)."""

    written: int
    batches: int
    open_words: int
    open_sentences: int


@dataclass(frozen=True)
class Layout:
    """Where the spool's batches start and what each holds. Every batch holds ``BATCH_RAW_WORDS`` raw words."""

    path: Path
    offsets: np.ndarray  # int64: byte offset of each batch's first line
    words: np.ndarray  # int64: real (spooled) words of each batch
    sentences: np.ndarray  # int64: real sentences of each batch

    @property
    def batches(self) -> int:
        return len(self.words)

    @property
    def tokens(self) -> int:
        return int(self.words.sum())

    @property
    def lines(self) -> int:
        return int(self.sentences.sum())


#: How the spool's batches are shared among training threads: one run of batch indices per thread.
Split = Callable[[Layout, int], Sequence[range]]


def split_evenly(layout: Layout, threads: int) -> list[range]:
    """Contiguous runs of batches, one per thread, covering the spool once, their sizes within one batch."""
    threads = max(1, min(threads, layout.batches))
    bounds = np.linspace(0, layout.batches, threads + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def padding(real_words: int) -> bytes:
    """The padding line that ends a batch of ``real_words`` words at exactly ``BATCH_RAW_WORDS`` raw words."""
    return b" ".join([PAD] * (BATCH_RAW_WORDS - real_words)) + b"\n"


def _whitespace(data: np.ndarray) -> np.ndarray:
    """Where ``data`` holds what ``std::istream >>`` splits on in the "C" locale: space and \\t \\n \\v \\f \\r."""
    return (data == 32) | (data - np.uint8(9) <= 4)  # uint8 arithmetic wraps: only 9..13 land in 0..4


def _token_starts(data: np.ndarray) -> np.ndarray:
    space = _whitespace(data)
    starts = np.flatnonzero(space[:-1] > space[1:]) + 1
    return np.concatenate([[0], starts]) if len(data) and not space[0] else starts


def line_lengths(data: np.ndarray) -> np.ndarray:
    """Tokens per line of ``data`` (uint8, ending with a newline), split as gensim's C++ reader splits."""
    return _lines(data)[1]


def _lines(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each line of ``data`` ends (its newline), and its tokens (:func:`line_lengths`)."""
    ends = np.flatnonzero(data == 10)
    return ends, np.diff(np.searchsorted(_token_starts(data), ends), prepend=0)


def _cut_long_lines(data: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cut lines longer than ``BATCH_WORDS`` tokens into consecutive pieces of equal length, as the tokenizer
    cuts documents (a Python step per long line only); the data, its line ends and lengths after."""
    long_lines = np.flatnonzero(lengths > BATCH_WORDS)
    if not len(long_lines):
        return data, ends, lengths
    data = data.copy()
    for line in long_lines:
        start = int(ends[line - 1]) + 1 if line else 0
        starts = _token_starts(data[start : int(ends[line]) + 1])
        pieces = -(-len(starts) // BATCH_WORDS)
        firsts = np.arange(1, pieces) * len(starts) // pieces  # the first token of every piece but the first
        data[start + starts[firsts] - 1] = 10  # the whitespace byte before it becomes a newline
    return data, *_lines(data)


class Spool:
    """Writes sentences as whole batches (see the module docstring) and records the batches' layout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - open across write calls, closed in close
        self._written = 0
        self._offsets: list[int] = [0]
        self._words: list[int] = []
        self._sentences: list[int] = []
        self._open_words = self._open_sentences = 0  # the batch being filled
        self._pending: list[bytes | memoryview] = []  # what one write() appends, written to the file at once

    def write(self, lines: bytes, source: str) -> tuple[int, int]:
        """Append sentences (LineSentence text); return how many sentences and tokens gensim will read.

        Raises TrainingError naming ``source`` when the disk fails (e.g. is full).
        """
        if not lines:
            return 0, 0
        if not lines.endswith(b"\n"):
            lines += b"\n"
        data = np.frombuffer(lines, dtype=np.uint8)
        sentences = tokens = start = 0
        while start < len(data):
            end = lines.find(b"\n", min(len(data), start + _CHUNK) - 1) + 1  # whole lines only
            chunk, ends, lengths = _cut_long_lines(data[start:end], *_lines(data[start:end]))
            self._pack(chunk, ends, lengths)
            self._drain(source)
            sentences, tokens, start = sentences + len(lengths), tokens + int(lengths.sum()), end
        return sentences, tokens

    def _pack(self, data: np.ndarray, newlines: np.ndarray, lengths: np.ndarray) -> None:
        """Append lines to the open batch, closing it (with its padding line) whenever the next line would not
        fit. One Python step per batch: a batch is ~10,000 words."""
        ends = newlines + 1
        words = np.cumsum(lengths)
        line = written = 0
        while line < len(lengths):
            before = int(words[line - 1]) if line else 0
            fits = int(np.searchsorted(words, before + BATCH_WORDS - self._open_words, side="right"))
            if fits > line:
                self._open_words += int(words[fits - 1]) - before
                self._open_sentences += fits - line
                line = fits
            if line < len(lengths):
                end = int(ends[line - 1]) if line else 0
                self._emit(data[written:end])
                written = end
                self._close_batch()
        self._emit(data[written:])

    def _emit(self, data: np.ndarray | bytes) -> None:
        self._pending.append(data if isinstance(data, bytes) else data.data)
        self._written += len(data)

    def _drain(self, source: str) -> None:
        """Write what was emitted since the last drain as one write: each write of a large buffer lets go of
        the GIL and waits for it again, which costs the actor's other threads (and this one) at every batch.

        Raises TrainingError naming ``source`` when the disk fails."""
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        try:
            self._file.write(data)
        except OSError as exc:
            hint = " (free space there or pass --spool-dir on a larger disk)" if exc.errno == errno.ENOSPC else ""
            raise TrainingError(f"spooling {source} to {self.path.parent} failed: {exc.strerror}{hint}") from None

    def _close_batch(self) -> None:
        if not self._open_sentences:
            return
        self._emit(padding(self._open_words))
        self._words.append(self._open_words)
        self._sentences.append(self._open_sentences)
        self._offsets.append(self._written)
        self._open_words = self._open_sentences = 0

    def flush(self) -> None:
        """Hand what was written to the operating system (others may watch the file grow)."""
        self._file.flush()

    def mark(self) -> Mark:
        """Where the spool stands now."""
        return Mark(self._written, len(self._words), self._open_words, self._open_sentences)

    def rewind(self, mark: Mark) -> None:
        """Forget everything written since ``mark`` (a partition that turned out bad): the file is cut back to
        it and the batches closed since are dropped, so the layout is as if it had never been written."""
        self._file.flush()
        self._file.truncate(mark.written)
        self._file.seek(mark.written)
        self._written = mark.written
        del self._words[mark.batches :], self._sentences[mark.batches :], self._offsets[mark.batches + 1 :]
        self._open_words, self._open_sentences = mark.open_words, mark.open_sentences

    def close(self) -> Layout:
        """Close the last batch and the file; return the layout the training threads start from."""
        if not self._file.closed:
            self._close_batch()
            self._drain("the last batch")
            self._file.close()
        return Layout(
            path=self.path,
            offsets=np.asarray(self._offsets[: len(self._words)], dtype=np.int64),
            words=np.asarray(self._words, dtype=np.int64),
            sentences=np.asarray(self._sentences, dtype=np.int64),
        )

    def seal(self, tokens: int, replayed: bytes = b"") -> Layout:
        """Append the ``replayed`` sentences (see :mod:`jobs.lineage.replay`), close, and check that the spool
        holds exactly the ``tokens`` spooled before plus theirs: what training will be checked against.

        Raises TrainingError when it does not."""
        tokens += self.write(replayed, "the replay reservoir")[1]
        layout = self.close()
        if layout.tokens != tokens:
            raise TrainingError(f"the spool holds {layout.tokens:,} tokens, not the {tokens:,} spooled")
        return layout

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()


def words_of(text: bytes) -> set[str]:
    """The distinct words of spooled sentences, split as gensim's reader splits them (a byte sequence that is no
    UTF-8 can match no word: it is replaced)."""
    return {token.decode("utf-8", "replace") for token in set(text.split())}


def sentences(path: Path, limit: int) -> Iterator[bytes]:
    """The first ``limit`` spooled sentences (without their newline), padding lines skipped."""
    with open(path, "rb") as source:
        for line in source:
            if limit <= 0:
                return
            if line.startswith(PAD):
                continue
            limit -= 1
            yield line.rstrip(b"\n")
