"""Discovering partitions as writers lay them out, and reading every supported format."""

from __future__ import annotations

import errno
import gzip
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from shards.errors import ConfigError, PartitionError
from shards.partitions import Readiness, discover, hold_back, list_input, open_filesystem, partitions_of
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions, tokenize_partition
from tests.support.files import write_parquet


def layout(root: Path) -> None:
    write_parquet(root / "dt=2026-11-24" / "hour=01" / "part-00001.parquet", ["b"])
    write_parquet(root / "dt=2026-11-24" / "hour=00" / "part-00000.snappy.parquet", ["a"])
    (root / "dt=2026-11-23").mkdir(parents=True)
    (root / "dt=2026-11-23" / "docs.jsonl.gz").write_bytes(gzip.compress(b'{"text": "j"}\n'))
    (root / "dt=2026-11-23" / "notes.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(b"t\n"))
    for junk in [
        "dt=2026-11-24/_SUCCESS",
        "dt=2026-11-24/_metadata",
        "dt=2026-11-24/.part-00000.parquet.crc",
        "dt=2026-11-24/.hidden",
        "_temporary/0/part-9.parquet",
        "dt=2026-11-24/x.parquet.crc",
    ]:
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"junk")


def test_discovery_is_recursive_sorted_and_ignores_writer_leftovers(tmp_path: Path) -> None:
    layout(tmp_path)
    fs, root = open_filesystem(str(tmp_path))
    found = discover(fs, root)
    assert [p.uri[len(str(tmp_path)) + 1 :] for p in found] == [
        "dt=2026-11-23/docs.jsonl.gz",
        "dt=2026-11-23/notes.txt.zst",
        "dt=2026-11-24/hour=00/part-00000.snappy.parquet",
        "dt=2026-11-24/hour=01/part-00001.parquet",
    ]
    assert [(p.format, p.compression) for p in found] == [
        ("jsonl", "gzip"),
        ("text", "zstd"),
        ("parquet", None),
        ("parquet", None),
    ]
    assert found[2].hive == (("dt", "2026-11-24"), ("hour", "00"))
    assert all(p.size > 0 and p.mtime_ns > 0 for p in found)


def test_glob_filters_relative_paths(tmp_path: Path) -> None:
    layout(tmp_path)
    fs, root = open_filesystem(str(tmp_path))
    assert [p.name for p in discover(fs, root, glob="dt=2026-11-24/*")] == [
        "part-00000.snappy.parquet",
        "part-00001.parquet",
    ]


def test_missing_root_and_unknown_format_are_config_errors(tmp_path: Path) -> None:
    fs, root = open_filesystem(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        discover(fs, root)
    with pytest.raises(ConfigError, match="unknown format"):
        discover(*open_filesystem(str(tmp_path)), forced_format="csv")


def tokens_of(tmp_path: Path, name: str, data: bytes, **read: object) -> list[str]:
    (tmp_path / name).write_bytes(data)
    fs, root = open_filesystem(str(tmp_path))
    [partition] = [p for p in discover(fs, root) if p.name == name]
    result = tokenize_partition(fs, partition, ReadOptions(**read), TokenizerConfig())  # type: ignore[arg-type]
    return result.lines.decode().split()


def test_every_format_reads_the_same_documents(tmp_path: Path) -> None:
    docs = ["First document here", "Second one", None, "Third\tdoc"]
    expected = "first document here second one third doc".split()
    jsonl = "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)).encode()
    text = "\n".join(d or "" for d in docs).encode() + b"\r\n"
    write_parquet(tmp_path / "a.parquet", docs)
    fs, root = open_filesystem(str(tmp_path))
    parquet = tokenize_partition(fs, discover(fs, root)[0], ReadOptions(), TokenizerConfig())
    assert parquet.lines.decode().split() == expected
    assert parquet.documents == 3
    assert tokens_of(tmp_path, "b.jsonl", jsonl) == expected
    assert tokens_of(tmp_path, "c.jsonl.gz", gzip.compress(jsonl)) == expected
    assert tokens_of(tmp_path, "d.txt", text) == expected
    assert tokens_of(tmp_path, "e.txt.zst", zstandard.ZstdCompressor().compress(text)) == expected


TEXT_TYPES = {"string": pa.string(), "large_string": pa.large_string(), "string_view": pa.string_view()}


@pytest.mark.parametrize("kind", sorted(TEXT_TYPES))
def test_every_arrow_text_type_reads_the_same_tokens(tmp_path: Path, kind: str) -> None:
    docs = ["Polars writes large strings", None, "Ünïcödé too, and a b c", ""]
    path = tmp_path / f"{kind}.parquet"
    pq.write_table(pa.table({"text": pa.array(docs, TEXT_TYPES[kind])}), path)
    assert str(pq.read_schema(path).field("text").type) == kind  # read back as written
    fs, root = open_filesystem(str(tmp_path))
    result = tokenize_partition(fs, discover(fs, root)[0], ReadOptions(), TokenizerConfig())
    assert result.lines == "polars writes large strings\nünïcödé too and\n".encode()
    assert (result.documents, result.sentences, result.tokens) == (3, 2, 7)
    assert result.counts.schema.field("word").type == pa.string()
    assert dict(zip(*result.counts.to_pydict().values(), strict=True))["polars"] == 1


def test_parquet_written_by_polars(tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")
    polars.DataFrame({"text": ["Written by Polars", None, "polars again"]}).write_parquet(tmp_path / "pl.parquet")
    assert pq.read_schema(tmp_path / "pl.parquet").field("text").type == pa.large_string()
    fs, root = open_filesystem(str(tmp_path))
    result = tokenize_partition(fs, discover(fs, root)[0], ReadOptions(), TokenizerConfig())
    assert result.lines == b"written by polars\npolars again\n"


def test_large_text_is_cut_into_arrays_that_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from shards import readers

    monkeypatch.setattr(readers, "_MAX_ARRAY_TEXT", 10)  # bytes: stands in for 1 GiB
    texts = pa.array(["aaaa", "bbbb", "cccc", "dddddddddddddddd", None, "ee"], pa.large_string())
    pieces = list(readers._fitting_strings(texts.slice(1)))
    assert [p.to_pylist() for p in pieces] == [["bbbb", "cccc"], ["dddddddddddddddd"], [None, "ee"]]
    assert {p.type for p in pieces} == {pa.string()}


def test_custom_text_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["custom column"], "text": [None]}), tmp_path / "p.parquet")
    assert tokens_of(tmp_path, "p.parquet", (tmp_path / "p.parquet").read_bytes(), text_column="body") == [
        "custom",
        "column",
    ]


@pytest.mark.parametrize(
    ("name", "data", "cause"),
    [
        ("empty.parquet", b"", "empty file"),
        ("junk.parquet", b"this is not parquet at all", "Parquet"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": broken\n', "malformed JSON"),
        ("bad.txt", b"ok\n\xff\xfe bad bytes\n", "invalid UTF-8"),
        ("bad.txt.gz", b"\x1f\x8b\x08\x00garbage", "gzip"),
        ("nofield.jsonl", b'{"body": "x"}\n', "no JSON line has the field 'text'"),
        ("README", b"hello", "unrecognized file type"),
    ],
)
def test_bad_partitions_raise_naming_the_shard_and_the_cause(
    tmp_path: Path, name: str, data: bytes, cause: str
) -> None:
    with pytest.raises(PartitionError, match=cause) as info:
        tokens_of(tmp_path, name, data)
    assert info.value.uri.endswith(name)
    assert name in str(info.value)


def test_non_text_and_missing_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(PartitionError, match="column 'text' holds int64, not text"):
        tokens_of(tmp_path, "ints.parquet", (tmp_path / "ints.parquet").read_bytes())
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(PartitionError, match=r"no column 'text' \(columns: body\)"):
        tokens_of(tmp_path, "other.parquet", (tmp_path / "other.parquet").read_bytes())


def test_document_size_limit(tmp_path: Path) -> None:
    write_parquet(tmp_path / "big.parquet", ["x" * 5000])
    with pytest.raises(PartitionError, match="exceeds the limit of 1,000"):
        tokens_of(tmp_path, "big.parquet", (tmp_path / "big.parquet").read_bytes(), max_document_bytes=1000)


def test_uris_with_credentials_are_refused_without_echoing_them() -> None:
    from jobs.config import from_args

    with pytest.raises(ConfigError, match="may not carry credentials") as info:
        from_args(["--input", "s3://AKIAX:topsecret@bucket/p", "--store", "models"])
    assert "topsecret" not in str(info.value)


def test_partition_size_limit(tmp_path: Path) -> None:
    write_parquet(tmp_path / "p.parquet", ["some text"] * 100)
    size = (tmp_path / "p.parquet").stat().st_size
    with pytest.raises(PartitionError, match=f"{size:,} bytes exceeds the partition limit of 100"):
        tokens_of(tmp_path, "p.parquet", (tmp_path / "p.parquet").read_bytes(), max_partition_bytes=100)


def ready_and_waiting(root: Path, readiness: Readiness, now: float | None = None) -> tuple[list[str], dict[str, str]]:
    fs, base = open_filesystem(str(root))
    listing = list_input(fs, base)
    ready, waiting = hold_back(listing, partitions_of(fs, listing), readiness, time.time() if now is None else now)
    return [p.key for p in ready], {p.key: reason for p, reason in waiting}


def test_folders_without_their_success_marker_wait_once_the_input_uses_markers(tmp_path: Path) -> None:
    write_parquet(tmp_path / "dt=1" / "part-0.parquet", ["done"])
    (tmp_path / "dt=1" / "_SUCCESS").touch()
    write_parquet(tmp_path / "dt=2" / "part-0.parquet", ["still being written"])
    write_parquet(tmp_path / "dt=3" / "part-0.parquet", ["moved in by a committer"])
    (tmp_path / "dt=3" / "_temporary" / "0").mkdir(parents=True)
    (tmp_path / "dt=4" / "events.jsonl.inprogress").parent.mkdir()
    (tmp_path / "dt=4" / "events.jsonl.inprogress").write_bytes(b'{"text": "half"}\n{"te')

    ready, waiting = ready_and_waiting(tmp_path, Readiness())
    assert ready == ["dt=1/part-0.parquet"]
    assert "no _SUCCESS" in waiting["dt=2/part-0.parquet"]
    assert "dt=3/ holds a staging folder" in waiting["dt=3/part-0.parquet"]
    assert "in-progress name" in waiting["dt=4/events.jsonl.inprogress"]

    (tmp_path / "_SUCCESS").touch()  # a marker above covers the folders below it (Spark's partitionBy)
    ready, waiting = ready_and_waiting(tmp_path, Readiness())
    assert ready == ["dt=1/part-0.parquet", "dt=2/part-0.parquet"]
    assert ready_and_waiting(tmp_path, Readiness(success_marker="never"))[0] == [
        "dt=1/part-0.parquet",
        "dt=2/part-0.parquet",
        "dt=3/part-0.parquet",
    ]


def test_plain_files_need_no_marker_unless_always(tmp_path: Path) -> None:
    write_parquet(tmp_path / "dt=1" / "part-0.parquet", ["plain"])
    assert ready_and_waiting(tmp_path, Readiness())[0] == ["dt=1/part-0.parquet"]
    ready, waiting = ready_and_waiting(tmp_path, Readiness(success_marker="always"))
    assert ready == [] and list(waiting) == ["dt=1/part-0.parquet"]


def test_files_younger_than_the_minimum_age_wait(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"text": "a writer appends to me"}\n')
    os.utime(path, (1_000_000, 1_000_000))
    assert ready_and_waiting(tmp_path, Readiness(min_file_age=60), now=1_000_030)[1] == {
        "events.jsonl": "modified 30 s ago (--min-file-age 60)"
    }
    assert ready_and_waiting(tmp_path, Readiness(min_file_age=60), now=1_000_061)[0] == ["events.jsonl"]
    with pytest.raises(ConfigError):
        Readiness(min_file_age=-1)
    with pytest.raises(ConfigError):
        Readiness(success_marker="sometimes")


def test_read_errors_on_the_way_to_the_bytes_are_transient_and_bad_bytes_are_not() -> None:
    from shards.readers import transient

    assert transient(OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 56, Failure"))
    assert transient(OSError("When reading information for key 'k': AWS Error SLOW_DOWN during HeadObject"))
    assert transient(OSError(errno.ECONNRESET, "Connection reset by peer"))
    assert transient(OSError(errno.EIO, "Input/output error"))
    assert not transient(OSError("ZSTD decompression failed: Unknown frame descriptor"))
    assert not transient(OSError("Couldn't deserialize thrift: TProtocolException: Invalid data"))
    assert not transient(OSError("zlib inflate failed: incorrect header check"))
