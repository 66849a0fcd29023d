"""Word counts as Arrow tables (``word``, ``count``), and summing many of them in near-linear time.

    >>> from shards.counts import RunningCounts
    >>> running = RunningCounts()
    >>> for table in tables:                                   # doctest: +SKIP
    ...     running.add(table)                                 # one per piece, as they arrive
    >>> running.table()                                        # doctest: +SKIP

Re-grouping the whole running table every few inputs costs the vocabulary's size each time: over 100,000
partitions of a 1M-word vocabulary that is quadratic, minutes of work on the trainer's ingest thread.
:class:`RunningCounts` merges like a binary counter instead: small tables wait in a buffer until they hold
``BUFFER_ROWS`` rows together (one grouping over many small tables costs less than many over two), then join
a short stack of tables, each at least twice as large as the one above it, in which only tables of similar
size are merged. Every row so takes part in O(log n) merges and the stack stays O(log n) deep.
"""

from __future__ import annotations

import pyarrow as pa

BUFFER_ROWS = 1 << 19  # ~10 MB of counts: a small increment's partitions wait for one merge, at the end
_SCHEMA = pa.schema([("word", pa.string()), ("count", pa.int64())])


def empty() -> pa.Table:
    return _SCHEMA.empty_table()


def merge_counts(tables: list[pa.Table]) -> pa.Table:
    """Sum several (word, count) tables into one."""
    if not tables:
        return empty()
    if len(tables) == 1:
        return tables[0]
    # One thread: the same tables then sum to the same order of words every time (with threads the order is
    # whatever order the threads finished in, and a model's new words join its vocabulary in this order), and on
    # the few cores of a training node one thread sums faster than a pool of them.
    together = pa.concat_tables(tables, promote_options="permissive")
    summed = together.group_by("word", use_threads=False).aggregate([("count", "sum")])
    return summed.rename_columns(["word", "count"])


class RunningCounts:
    """The sum of every table added so far; adding costs O(log n) amortized merges of similar-sized tables."""

    def __init__(self, buffer_rows: int = BUFFER_ROWS) -> None:
        self.buffer_rows = buffer_rows
        self._stack: list[pa.Table] = []
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.added = 0

    def add(self, table: pa.Table) -> None:
        self.added += 1
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.buffer_rows:
            self._push(merge_counts(self._buffer))
            self._buffer, self._buffered = [], 0

    def _push(self, table: pa.Table) -> None:
        self._stack.append(table)
        while len(self._stack) > 1 and self._stack[-2].num_rows <= 2 * self._stack[-1].num_rows:
            top = self._stack.pop()
            self._stack[-1] = merge_counts([self._stack[-1], top])

    def table(self) -> pa.Table:
        """The counts summed so far, as one table."""
        merged = merge_counts(self._stack + self._buffer)
        self._stack, self._buffer, self._buffered = ([merged] if merged.num_rows else []), [], 0
        return merged

    @property
    def depth(self) -> int:
        """Tables in the stack (the buffer holds fewer than ``buffer_rows`` rows besides)."""
        return len(self._stack)
