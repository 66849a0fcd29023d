"""Word counts as Arrow tables (``word``, ``count``), and summing many of them in near-linear time.

    >>> from shards.counts import RunningCounts
    >>> running = RunningCounts()
    >>> for table in tables:                                   # doctest: +SKIP
    ...     running.add(table)                                 # one per piece, as they arrive
    >>> running.table()                                        # doctest: +SKIP

Re-grouping the whole running table every few inputs costs the vocabulary's size each time: over 100,000
partitions of a 1M-word vocabulary that is quadratic, minutes of work on the trainer's ingest thread.
:class:`RunningCounts` merges like a binary counter instead: it keeps a short stack of tables, each at least
twice as large as the one above it, and merges only tables of similar size, so every row takes part in
O(log n) merges and the stack stays O(log n) deep.
"""

from __future__ import annotations

import pyarrow as pa

_SCHEMA = pa.schema([("word", pa.string()), ("count", pa.int64())])


def empty() -> pa.Table:
    return _SCHEMA.empty_table()


def merge_counts(tables: list[pa.Table]) -> pa.Table:
    """Sum several (word, count) tables into one."""
    if not tables:
        return empty()
    if len(tables) == 1:
        return tables[0]
    summed = pa.concat_tables(tables, promote_options="permissive").group_by("word").aggregate([("count", "sum")])
    return summed.rename_columns(["word", "count"])


class RunningCounts:
    """The sum of every table added so far; adding costs O(log n) amortized merges of similar-sized tables."""

    def __init__(self) -> None:
        self._stack: list[pa.Table] = []
        self.added = 0

    def add(self, table: pa.Table) -> None:
        self.added += 1
        if table.num_rows == 0:
            return
        self._stack.append(table)
        while len(self._stack) > 1 and self._stack[-2].num_rows <= 2 * self._stack[-1].num_rows:
            top = self._stack.pop()
            self._stack[-1] = merge_counts([self._stack[-1], top])

    def table(self) -> pa.Table:
        """The counts summed so far, as one table."""
        merged = merge_counts(self._stack)
        self._stack = [merged] if merged.num_rows else []
        return merged

    @property
    def depth(self) -> int:
        return len(self._stack)
