"""Hostile partitions cost a bounded amount to refuse: a newline-free gzip bomb, its JSON Lines twin, a
decompression bomb of short lines, a Parquet dictionary bomb. Each is a PartitionError naming the file and
the limit; the streaming ones are read in a fresh process whose peak memory is measured."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shards.errors import ConfigError, PartitionError
from shards.limits import RATIO_FLOOR, Limits
from shards.partitions import discover, open_filesystem
from shards.readers import read_texts
from shards.tokenized import ReadOptions
from tests.support import REPO

MiB = 1 << 20

#: Reads partitions with read_texts in a fresh process (the peak memory is then these reads' and no other
#: test's), each from a reset peak (Linux's clear_refs): prints each read's growth of the peak RSS over the RSS
#: it started from (VmHWM and VmRSS, KiB), and its error.
READ_EACH = """
import json, re, sys
from shards.limits import Limits
from shards.partitions import discover, open_filesystem
from shards.readers import read_texts

def kib(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

results = []
for path, document, ratio in json.loads(sys.argv[1]):
    fs, root = open_filesystem(path.rsplit("/", 1)[0])
    [partition] = [p for p in discover(fs, root) if p.path == path]
    limits = Limits(max_document_bytes=document, max_decompression_ratio=ratio)
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")
    start, error = kib("VmRSS"), None
    try:
        for texts in read_texts(fs, partition, limits=limits):
            pass
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    results.append({"grown": (kib("VmHWM") - start) << 10, "error": error})
print(json.dumps(results))
"""


def gzip_bomb(path: Path, head: bytes, unit: bytes, mib: int) -> Path:
    """``head`` then ``mib`` MiB of ``unit`` repeated, as concatenated gzip members (one compressed MiB
    repeated: a few hundred kilobytes, made in milliseconds)."""
    member = gzip.compress(unit * (MiB // len(unit)), 9)
    path.write_bytes(gzip.compress(head) + member * mib)
    return path


DOCUMENT = 8 * MiB


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str | None]]:
    """Three gzip bombs of 0.3 MB that decompress to 300 MiB, each read in one fresh process: by name, the
    file, how much its read grew the peak RSS, and the error it raised."""
    folder = tmp_path_factory.mktemp("bombs")
    reads = {  # name: (file, --max-document-bytes, --max-decompression-ratio)
        "text": (gzip_bomb(folder / "one-line.txt.gz", b"", b"a", 300), DOCUMENT, 0.0),
        "jsonl": (gzip_bomb(folder / "one-line.jsonl.gz", b'{"text": "', b"a", 300), DOCUMENT, 0.0),
        "lines": (gzip_bomb(folder / "lines.txt.gz", b"", b"a" * 1023 + b"\n", 300), 64 * MiB, 200.0),
    }
    done = subprocess.run(
        [sys.executable, "-c", READ_EACH, json.dumps([(str(p), d, r) for p, d, r in reads.values()])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (read[0], r["grown"], r["error"]) for (name, read), r in zip(reads.items(), results, strict=True)}


def test_a_newline_free_gzip_is_refused_while_it_is_read_in_bounded_memory(bombs: dict) -> None:  # type: ignore[type-arg]
    # 0.3 MB that decompress to 300 MiB of one letter without a newline: before, the reader's carry grew by
    # quadratic copying to the whole text (1.2 GiB of peak memory); now the line is refused past the limit.
    # The ratio cap is off here: it would stop these first.
    bound = 2 * DOCUMENT + 64 * MiB  # the line held, one block read, the decompressor's buffers
    for name in ("text", "jsonl"):
        path, grown, error = bombs[name]
        assert path.stat().st_size < 400_000
        assert error == (
            f"PartitionError: {path}: a line of more than 8,388,608 bytes starting at byte 0 of the decompressed "
            "text exceeds the limit of 8,388,608 (raise --max-document-bytes)"
        )
        assert grown < bound, (name, grown)


def test_a_decompression_bomb_of_short_lines_is_refused_by_its_ratio(bombs: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    path, grown, error = bombs["lines"]  # about 500:1
    assert error is not None and error.startswith(f"PartitionError: {path}: 33,554,432 bytes decompressed from ")
    assert error.endswith(
        ", a ratio over 200 (a decompression bomb? raise --max-decompression-ratio, or 0 to turn it off)"
    )
    assert grown < 2 * RATIO_FLOOR + 64 * MiB, grown

    # a small file that compresses as well is read: the ratio is checked past the first 16 MiB only
    small = gzip_bomb(tmp_path / "small.txt.gz", b"", b"a" * 1023 + b"\n", 15)
    fs, root = open_filesystem(str(tmp_path))
    [partition] = discover(fs, root)
    assert small.stat().st_size * 200 < 15 * MiB
    assert sum(len(texts) for texts in read_texts(fs, partition)) == 15 * 1024


def test_decompressed_bytes_count_against_the_partition_limit(tmp_path: Path) -> None:
    (tmp_path / "many.jsonl.gz").write_bytes(gzip.compress(b'{"text": "several words here"}\n' * 100_000))
    fs, root = open_filesystem(str(tmp_path))
    [partition] = discover(fs, root)
    assert partition.size < 1 * MiB
    with pytest.raises(PartitionError, match=r"more than 1,048,576 bytes once decompressed.*--max-partition-bytes"):
        for _ in read_texts(fs, partition, limits=Limits(max_partition_bytes=1 * MiB)):
            pass
    assert sum(len(t) for t in read_texts(fs, partition, limits=Limits(max_partition_bytes=4 * MiB))) == 100_000


def test_a_parquet_dictionary_bomb_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # 2,000 rows naming one 1 MiB dictionary value: a few hundred bytes that decode to 2 GiB. Written without
    # Arrow's schema, as any other writer would, so Arrow decodes it to plain strings.
    path = tmp_path / "bomb.parquet"
    column = pa.DictionaryArray.from_arrays(pa.array([0] * 2000, pa.int32()), pa.array(["a" * MiB]))
    pq.write_table(pa.table({"text": column}), path, compression="zstd", store_schema=False)
    assert path.stat().st_size < 2000
    fs, root = open_filesystem(str(tmp_path))
    [partition] = discover(fs, root)
    with pytest.raises(PartitionError) as info:
        list(read_texts(fs, partition, limits=Limits(max_document_bytes=MiB - 1)))
    assert info.value.cause == (
        "row group 0: a value of 1,048,576 bytes in the dictionary of column 'text' exceeds the limit of "
        "1,048,575 (raise --max-document-bytes)"
    )
    decoded = 0
    with pytest.raises(PartitionError, match=r"bytes decompressed from \d+, a ratio over 200 "):
        for texts in read_texts(fs, partition):  # batches of 16 rows (one 16 MiB block) until the ratio
            decoded += len(texts) * MiB
    assert decoded == RATIO_FLOOR  # one batch, then the second one is refused

    # one value longer than the limit, told by the footer alone: the column chunk's bytes over its values
    pq.write_table(pa.table({"text": ["b" * (4 * MiB)]}), tmp_path / "bomb.parquet")
    [partition] = discover(fs, root)
    with pytest.raises(PartitionError, match=r"row group 0: column 'text' holds [\d,]+ bytes in 1 value\(s\), so a"):
        list(read_texts(fs, partition, limits=Limits(max_document_bytes=MiB)))


def test_limits_are_validated() -> None:
    assert ReadOptions(max_decompression_ratio=0).limits.max_decompression_ratio == 0
    with pytest.raises(ConfigError, match=r"max_decompression_ratio must be 0 \(off\) or at least 1, got 0\.5"):
        ReadOptions(max_decompression_ratio=0.5)
    with pytest.raises(ConfigError, match="max_document_bytes must be positive"):
        ReadOptions(max_document_bytes=0)


def test_lines_are_the_same_whatever_the_block_they_are_read_in(tmp_path: Path) -> None:
    text = "first line\r\nsecond, longer line\n\nünïcödé line\r\n" + "x" * 40 + "\nlast without newline"
    (tmp_path / "crlf.txt").write_text(text, encoding="utf-8")
    fs, root = open_filesystem(str(tmp_path))
    [partition] = discover(fs, root)
    expected = ["first line", "second, longer line", "", "ünïcödé line", "x" * 40, "last without newline"]
    for block in (1, 7, 16, 1 << 20):
        assert [s for t in read_texts(fs, partition, block_bytes=block) for s in t.to_pylist()] == expected, block
    with pytest.raises(PartitionError) as info:  # a line inside one block, told with its offset in the file
        list(read_texts(fs, partition, limits=Limits(max_document_bytes=39)))
    assert info.value.cause == (
        "a line of 40 bytes starting at byte 51 of the file exceeds the limit of 39 (raise --max-document-bytes)"
    )
    with pytest.raises(PartitionError) as info:  # a line over several blocks, refused before it ends
        list(read_texts(fs, partition, block_bytes=7, limits=Limits(max_document_bytes=30)))
    assert info.value.cause.startswith("a line of more than 30 bytes starting at byte 51 of the file")
