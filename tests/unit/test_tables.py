"""The rows a table's commits add, rewrite and delete, computed from made-up changes without a table library."""

from __future__ import annotations

from shards.tables.changes import Commit, DataFile, new_rows


def test_new_rows_follow_appends_rewrites_and_deletes() -> None:
    old, a, b = DataFile("old", rows=10), DataFile("a", rows=4, version=5), DataFile("b", rows=3, version=6)
    merged, survivors = DataFile("merged", rows=14, version=7), DataFile("b2", rows=2, version=8)
    window = new_rows(
        [
            Commit(5, "WRITE", True, added=(a,)),
            Commit(6, "WRITE", True, added=(b,)),
            Commit(7, "OPTIMIZE", False, added=(merged,), removed=(old, a)),  # consumed and new rows merged
            Commit(8, "DELETE", True, added=(survivors,), removed=(b,)),  # a row of b deleted before it was read
            Commit(9, "DELETE", True, added=(DataFile("m2", rows=11),), removed=(merged,)),  # 3 rows of merged
        ]
    )
    assert [f.path for f in window.read] == ["a", "b2"]  # a as it was appended, b's survivors
    assert [f.path for f in window.originals] == ["a"]
    assert (window.deleted, window.rewritten, window.untrained) == (3, 11, 0)
    assert (window.commits, window.data_commits, window.rewrites) == (5, 4, 1)
    # a rewrite of new rows only replaces them; a merge that writes more than it rewrote leaves rows untrained
    compacted = DataFile("ab", rows=7, version=7)
    assert [
        f.path
        for f in new_rows([Commit(5, "WRITE", True, (a, b)), Commit(7, "OPTIMIZE", False, (compacted,), (a, b))]).read
    ] == ["ab"]
    merge = new_rows([Commit(5, "MERGE", True, added=(DataFile("o2", rows=13),), removed=(old,))])
    assert (merge.read, merge.deleted, merge.rewritten, merge.untrained) == ([], 0, 10, 3)
