"""Bounded discovery: only the folders the filters can match are listed, with the same partitions as a
full listing filtered afterwards, and readiness markers honoured where only today's folder is listed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shards.errors import PartitionError
from shards.listing import Bounds, list_bounded
from shards.partitions import Readiness, hold_back, list_input, open_filesystem, partitions_of, select
from shards.readers import read_texts
from tests.support.counting_fs import CountingFileSystem, counting
from tests.support.files import write_parquet

DAYS = [f"2026-11-{d:02d}" for d in range(1, 11)]


def layout(root: Path, markers: bool = True) -> None:
    for day in DAYS:
        for part in range(2):
            write_parquet(root / f"dt={day}" / f"part-{part}.parquet", [f"{day} {part}"])
        if markers:
            (root / f"dt={day}" / "_SUCCESS").touch()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a date folder\n")


def listed(handler: CountingFileSystem, root: Path) -> list[tuple[str, bool]]:
    return sorted((path[len(str(root)) :].lstrip("/"), recursive) for path, recursive in handler.listed)


def test_only_date_folders_on_or_after_since_are_listed(tmp_path: Path) -> None:
    layout(tmp_path)
    handler = CountingFileSystem()
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11-08"))
    # the root, the three days kept and the folder without a date, one level each; the newest day left out
    # is searched for readiness markers only
    assert listed(handler, tmp_path) == [
        ("", False),
        ("dt=2026-11-07", True),
        ("dt=2026-11-08", False),
        ("dt=2026-11-09", False),
        ("dt=2026-11-10", False),
        ("notes", False),
    ]
    assert (listing.calls, listing.entries, listing.pruned) == (6, 11 + 3 * 3 + 1 + 3, 7)
    bounded = partitions_of(counting(handler), listing)
    assert [p.key for p in bounded] == [
        *(f"dt={day}/part-{part}.parquet" for day in DAYS[7:] for part in range(2)),
        "notes/readme.txt",
    ]
    full = list_input(counting(CountingFileSystem()), str(tmp_path))
    assert [p.key for p in select(bounded, since="2026-11-08")] == [
        p.key for p in select(partitions_of(counting(handler), full), since="2026-11-08")
    ]


def test_without_bounds_one_recursive_listing(tmp_path: Path) -> None:
    layout(tmp_path)
    handler = CountingFileSystem()
    listing = list_bounded(counting(handler), str(tmp_path))
    assert listed(handler, tmp_path) == [("", True)] and (listing.calls, listing.pruned) == (1, 0)
    assert len(partitions_of(counting(handler), listing)) == 21


def test_where_and_month_folders_prune_as_select_filters(tmp_path: Path) -> None:
    for region in ("eu-west", "eu-north", "us-east"):
        for month in ("2026-10", "2026-11"):
            write_parquet(tmp_path / f"region={region}" / f"dt={month}" / "p.parquet", [region])
    handler = CountingFileSystem()
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11-05", where=(("region", "eu-*"),)))
    # dt=2026-10 is before 2026-11-05; dt=2026-11 compares as its prefix "2026-11" < the date, as select has it
    assert [p.key for p in partitions_of(counting(handler), listing)] == []
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11", where=(("region", "eu-*"),)))
    keys = [p.key for p in partitions_of(counting(handler), listing)]
    assert keys == ["region=eu-north/dt=2026-11/p.parquet", "region=eu-west/dt=2026-11/p.parquet"]
    assert not any("us-east" in path for path, _ in handler.listed)  # never listed, not even its entries
    full = partitions_of(counting(handler), list_input(counting(handler), str(tmp_path)))
    assert [p.key for p in select(full, since="2026-11", where=(("region", "eu-*"),))] == keys


def test_markers_are_still_required_where_only_todays_folder_is_listed(tmp_path: Path) -> None:
    layout(tmp_path)
    write_parquet(tmp_path / "dt=2026-11-11" / "part-0.parquet", ["still being written"])  # no _SUCCESS yet
    handler = CountingFileSystem()
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11-11"))
    found = select(partitions_of(counting(handler), listing), since="2026-11-11")
    ready, waiting = hold_back(listing, found, Readiness(), now=2e9)
    assert ready == [] and [(p.key, "no _SUCCESS" in why) for p, why in waiting] == [
        ("dt=2026-11-11/part-0.parquet", True),
        ("notes/readme.txt", True),  # a file without a date folder is selected by its (recent) mtime
    ]
    (tmp_path / "dt=2026-11-11" / "_SUCCESS").touch()
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11-11"))
    ready, waiting = hold_back(listing, found, Readiness(), now=2e9)
    assert [p.key for p in ready] == ["dt=2026-11-11/part-0.parquet"]
    assert [p.key for p, _ in waiting] == ["notes/readme.txt"]


def test_a_staging_folder_is_seen_but_never_descended_into(tmp_path: Path) -> None:
    layout(tmp_path, markers=False)
    write_parquet(tmp_path / "_temporary" / "0" / "part-9.parquet", ["staged"])
    handler = CountingFileSystem()
    listing = list_bounded(counting(handler), str(tmp_path), Bounds(since="2026-11-10"))
    assert not any("_temporary" in path for path, _ in handler.listed)
    found = select(partitions_of(counting(handler), listing), since="2026-11-10")
    ready, waiting = hold_back(listing, found, Readiness(), now=2e9)
    assert ready == [] and [p.key for p, _ in waiting] == [
        "dt=2026-11-10/part-0.parquet",
        "dt=2026-11-10/part-1.parquet",
        "notes/readme.txt",
    ]
    assert all("the input root holds a staging folder" in why for _, why in waiting)


def test_symbolic_links_out_of_a_local_input_are_left_out_unless_followed(tmp_path: Path) -> None:
    data, home = tmp_path / "data", Path(os.path.realpath(tmp_path)) / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("secret\n")
    (home / "notes").mkdir()
    (home / "notes" / "n.txt").write_text("outside\n")
    day = data / "dt=2026-11-02"
    day.mkdir(parents=True)
    (day / "words.txt").write_text("inside\n")
    (day / "alias.txt").symlink_to("words.txt")  # inside the input: read
    (day / "token.txt").symlink_to(home / ".ray" / "auth_token")
    (data / "dt=2026-11-03").symlink_to(home / "notes", target_is_directory=True)
    (day / "loop").symlink_to("..", target_is_directory=True)
    (day / "gone.txt").symlink_to(tmp_path / "missing")
    fs, root = open_filesystem(str(data))
    real = os.path.realpath(root)
    loops_and_broken = {
        f"{root}/dt=2026-11-02/gone.txt": "a broken symbolic link",
        f"{root}/dt=2026-11-02/loop": f"a symbolic link to {real}, a folder that holds it (a loop)",
    }
    outside = {
        f"{root}/dt=2026-11-02/token.txt": f"a symbolic link to {home}/.ray/auth_token, outside the input (see "
        "--follow-symlinks)",
        f"{root}/dt=2026-11-03": f"a symbolic link to {home}/notes, outside the input (see --follow-symlinks)",
    }
    for listing in (list_input(fs, root), list_bounded(fs, root, Bounds(since="2026-11-02"))):
        assert [p.key for p in partitions_of(fs, listing)] == ["dt=2026-11-02/alias.txt", "dt=2026-11-02/words.txt"]
        assert dict(listing.left_out) == {**loops_and_broken, **outside}
    followed = list_input(fs, root, follow_symlinks=True)
    assert [p.key for p in partitions_of(fs, followed)] == [
        "dt=2026-11-02/alias.txt",
        "dt=2026-11-02/token.txt",
        "dt=2026-11-02/words.txt",
        "dt=2026-11-03/n.txt",
    ]
    assert dict(followed.left_out) == loops_and_broken

    # a listed file that became a link out of the input by the time it is read is a bad partition
    [words] = [p for p in partitions_of(fs, list_input(fs, root)) if p.key == "dt=2026-11-02/words.txt"]
    (day / "words.txt").unlink()
    (day / "words.txt").symlink_to(home / ".ray" / "auth_token")
    with pytest.raises(PartitionError, match=f"a symbolic link to {home}/.ray/auth_token, outside the input: not read"):
        list(read_texts(fs, words))
    assert [t.to_pylist() for t in read_texts(fs, words, follow_symlinks=True)] == [["secret"]]
