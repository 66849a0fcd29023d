"""Finding partitions under a root, as Spark, Hive and friends lay them out.

    >>> from shards.partitions import discover, open_filesystem
    >>> fs, root = open_filesystem("data/sample")          # or "s3://bucket/prefix"
    >>> for p in discover(fs, root):
    ...     print(p.uri, p.format, p.hive)                   # doctest: +SKIP

Discovery walks the root recursively through a ``pyarrow.fs.FileSystem`` (local or S3 alike), ignores what
writers leave beside data (``_SUCCESS``, ``_metadata``, ``.crc`` and other hidden files, ``_temporary/``
folders), reads ``key=value`` folder names as hive keys, and returns partitions sorted by path so every run
sees them in the same order.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Literal

import pyarrow.fs as pafs

from shards.errors import ConfigError
from shards.s3settings import S3Settings

Format = Literal["parquet", "jsonl", "text"]
Compression = Literal["gzip", "zstd"] | None

FORMATS: tuple[str, ...] = ("parquet", "jsonl", "text")
_EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".txt": "text",
    ".text": "text",
}
_COMPRESSIONS: dict[str, Compression] = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}


@dataclass(frozen=True)
class Partition:
    """One file of new data.

    ``key`` is its identity in ledgers: the path relative to the input root, so the same data keeps its
    identity when the input is mounted elsewhere, copied to another bucket, or read through ``s3://`` instead
    of a mount. ``uri`` names it in messages; ``path`` is what its filesystem opens.
    """

    uri: str
    path: str
    size: int
    mtime_ns: int
    format: Format | None
    compression: Compression = None
    hive: tuple[tuple[str, str], ...] = field(default=())
    key: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Resolve a local path or ``s3://`` URI to a filesystem and a path inside it.

    S3 follows the same settings as the model store (:class:`shards.s3settings.S3Settings`: endpoint,
    region, retries, addressing style), parsed from the environment when the filesystem is opened.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if uri.startswith("s3://"):
        return _s3_filesystem(), uri[len("s3://") :].rstrip("/")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises several types for bad URIs
        raise ConfigError(f"cannot open {uri!r}: {exc}") from exc
    return fs, path


def _s3_filesystem() -> pafs.FileSystem:
    settings = S3Settings.from_env()
    retry = pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts)
    return pafs.S3FileSystem(retry_strategy=retry, **settings.pyarrow_options())


def _uri(fs: pafs.FileSystem, path: str) -> str:
    return f"s3://{path}" if fs.type_name == "s3" else path


def root_uri(partitions: list[Partition]) -> str | None:
    """The folder the partitions' keys are relative to, as a URI (None without partitions)."""
    if not partitions:
        return None
    first = partitions[0]
    return first.uri[: len(first.uri) - len(first.key)].rstrip("/")


def _ignored(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/")) or relative.endswith(".crc")


def detect_format(name: str, forced: str = "auto") -> tuple[Format | None, Compression]:
    """Format and compression of a file, from its extensions unless ``forced`` names the format."""
    stem, ext = os.path.splitext(name.lower())
    compression = _COMPRESSIONS.get(ext)
    if compression:
        stem, ext = os.path.splitext(stem)
    if forced != "auto":
        return forced, compression  # type: ignore[return-value]
    return _EXTENSIONS.get(ext), compression


def hive_keys(relative: str) -> tuple[tuple[str, str], ...]:
    """The ``key=value`` folder names on a partition's path, outermost first."""
    folders = relative.split("/")[:-1]
    return tuple(tuple(f.split("=", 1)) for f in folders if "=" in f)  # type: ignore[misc]


def discover(
    fs: pafs.FileSystem, root: str, *, forced_format: str = "auto", glob: str | None = None
) -> list[Partition]:
    """Every partition under ``root``, sorted by path. Raises ConfigError when the root does not exist."""
    if forced_format not in ("auto", *FORMATS):
        raise ConfigError(f"unknown format {forced_format!r}; choose auto, {', '.join(FORMATS)}")
    root = root.rstrip("/")
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"input {_uri(fs, root)!r} does not exist")
    if info.type == pafs.FileType.File:
        infos = [info]
        base = root.rsplit("/", 1)[0]
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        base = root
    found = []
    for item in infos:
        if item.type != pafs.FileType.File:
            continue
        relative = item.path[len(base) :].lstrip("/")
        if _ignored(relative) or (glob and not fnmatch.fnmatch(relative, glob)):
            continue
        fmt, compression = detect_format(item.base_name, forced_format)
        found.append(
            Partition(
                uri=_uri(fs, item.path),
                path=item.path,
                size=int(item.size or 0),
                mtime_ns=int(item.mtime_ns or 0),
                format=fmt,
                compression=compression,
                hive=hive_keys(relative),
                key=relative,
            )
        )
    return sorted(found, key=lambda p: p.path)


DATE_KEYS = ("dt", "date", "day", "ds")


def select(
    partitions: list[Partition],
    *,
    since: str | None = None,
    where: tuple[tuple[str, str], ...] = (),
    glob: str | None = None,
) -> list[Partition]:
    """Keep partitions on or after ``since`` (an ISO date, read from a dt/date/day/ds folder, else from the
    modification time) whose hive keys match every ``(key, glob)`` of ``where`` and whose path below the root
    matches ``glob``."""
    kept = []
    for p in partitions:
        if glob and not fnmatch.fnmatch(p.key, glob):
            continue
        keys = dict(p.hive)
        if any(key not in keys or not fnmatch.fnmatch(keys[key], pattern) for key, pattern in where):
            continue
        if since is not None:
            day = next((keys[k] for k in DATE_KEYS if k in keys), None)
            if day is None:
                day = datetime.datetime.fromtimestamp(p.mtime_ns / 1e9, datetime.timezone.utc).date().isoformat()
            if day[: len(since)] < since:
                continue
        kept.append(p)
    return kept
