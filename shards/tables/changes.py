"""Which rows of a table are new since the version a model consumed: a pure decision over a table's commits.

    >>> from shards.tables.changes import Commit, DataFile, new_rows
    >>> a, b = DataFile("a.parquet", rows=10), DataFile("b.parquet", rows=5)
    >>> window = new_rows([Commit(4, "append", True, added=(b,)), Commit(5, "optimize", False, added=(), removed=(a,))])
    >>> [f.path for f in window.read], window.deleted
    (['b.parquet'], 0)

A table's rows live in immutable data files; each commit (a Delta version, an Iceberg snapshot) adds files and
removes files, and says whether it changed data (Delta's ``dataChange``, an Iceberg operation other than
``replace``). Walking the commits after the consumed version, oldest first, with the files that were live at
that version counted as *consumed*:

- **an append** (it adds files and removes none) brings new rows: its files are read;
- **a rewrite that changes no data** (compaction, Z-order, ``rewrite_data_files``) moves rows: if it only
  moves new rows, its output replaces them (the same rows); if it moves consumed rows, its output counts as
  consumed, and the new rows it swallowed are read from the files they were appended in (still in storage
  until VACUUM or snapshot expiry removes them: :attr:`Window.originals`);
- **a delete or rewrite that changes data** (DELETE, UPDATE, MERGE, overwrite): new files it removes are not
  read (their rows were deleted before anyone consumed them; what survives is in its output, read instead);
  when it touches consumed files, its output mixes rows already trained with changed ones, which no file-level
  reader can tell apart: it is not read, and the rows are counted (:attr:`Window.deleted`,
  :attr:`Window.rewritten`, :attr:`Window.untrained`) so the report says what the model could not follow.

A commit is decided partition by partition (rows never move between partitions), so a delete that spans
consumed and new partitions is exact; within one partition, new rows a data-changing rewrite mixed with
consumed ones are counted, not read.

Nothing here reads a file; :mod:`shards.tables.delta` and :mod:`shards.tables.iceberg` turn a table's log
into :class:`Commit` s.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataFile:
    """One data file of a table: its location as the table records it, its rows (None: not recorded), its size
    and modification time, and its partition values (name, value as text)."""

    path: str
    rows: int | None = None
    size: int = 0
    mtime_ns: int = 0
    partition: tuple[tuple[str, str], ...] = ()
    version: int = 0  # the commit that added it


@dataclass(frozen=True)
class Commit:
    """One commit of a table, as its files changed: ``data_change`` is False for a rewrite that moved rows
    without changing them (compaction)."""

    version: int
    operation: str
    data_change: bool
    added: tuple[DataFile, ...] = ()
    removed: tuple[DataFile, ...] = ()


@dataclass
class Window:
    """What the commits after the consumed version amount to.

    ``read``: files whose rows are new, in commit order (each once); ``originals``: among them, files a
    compaction later merged with consumed rows, read as they were appended. ``deleted``: consumed rows that
    commits removed, net of what they wrote back; ``rewritten``: consumed rows that commits rewrote (updated, or
    carried unchanged through a copy-on-write delete or merge), not trained again; ``untrained``: rows such
    commits wrote beyond those (a merge's inserts, say), not trained because they cannot be told apart.
    ``commits``: how many commits the window holds, ``data_commits`` of them changed data, ``rewrites`` did not.
    """

    read: list[DataFile] = field(default_factory=list)
    originals: list[DataFile] = field(default_factory=list)
    deleted: int = 0
    rewritten: int = 0
    untrained: int = 0
    commits: int = 0
    data_commits: int = 0
    rewrites: int = 0
    unknown_rows: int = 0  # removed consumed files whose row count the table did not record


def _rows(files: list[DataFile] | tuple[DataFile, ...], window: Window) -> int:
    missing = [f for f in files if f.rows is None]
    window.unknown_rows += len(missing)
    return sum(f.rows or 0 for f in files)


def new_rows(commits: list[Commit]) -> Window:
    """The files to read and the rows to report for ``commits`` (oldest first), every file live before the
    first of them counting as consumed (see the module docstring)."""
    window = Window(commits=len(commits))
    pending: dict[str, DataFile] = {}  # live files of new rows
    originals: dict[str, DataFile] = {}  # new files merged with consumed rows by a compaction: read as written
    for commit in commits:
        if commit.data_change:
            window.data_commits += 1
        else:
            window.rewrites += 1
        # Rows never move between partitions, so a commit is decided partition by partition: a delete that
        # spans a consumed day and a new one rewrites each apart.
        groups: dict[tuple[tuple[str, str], ...], tuple[list[DataFile], list[DataFile]]] = {}
        for f in commit.added:
            groups.setdefault(f.partition, ([], []))[0].append(f)
        for f in commit.removed:
            groups.setdefault(f.partition, ([], []))[1].append(f)
        for added, removed in groups.values():
            _apply(commit.data_change, added, removed, pending, originals, window)
    read = {**originals, **pending}
    window.read = sorted(read.values(), key=lambda f: (f.version, f.path))
    window.originals = sorted(originals.values(), key=lambda f: (f.version, f.path))
    return window


def _apply(
    data_change: bool,
    added: list[DataFile],
    removed: list[DataFile],
    pending: dict[str, DataFile],
    originals: dict[str, DataFile],
    window: Window,
) -> None:
    """One commit's files of one partition, applied to the live new files (``pending``)."""
    gone_new = [f for f in removed if f.path in pending]
    gone_old = [f for f in removed if f.path not in pending]
    for f in gone_new:
        del pending[f.path]
    if not data_change:
        if gone_old:  # consumed rows moved: the output is consumed; the new rows in it are read from their files
            originals.update({f.path: f for f in gone_new})
        else:
            pending.update({f.path: f for f in added})
        return
    if not gone_old:
        pending.update({f.path: f for f in added})  # appends, and what survives of new rows a delete rewrote
        return
    rewrote, written = _rows(gone_old, window), _rows(added, window)
    window.deleted += max(0, rewrote - written)
    window.rewritten += min(rewrote, written)
    window.untrained += max(0, written - rewrote)


def appended(files: list[DataFile], version: int) -> Commit:
    """The files of a table that a model has never consumed from, as one append (a table's first refresh)."""
    return Commit(version, "snapshot", True, added=tuple(files))
