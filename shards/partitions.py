"""Finding partitions under a root, as Spark, Hive and friends lay them out.

    >>> from shards.partitions import discover, open_filesystem
    >>> fs, root = open_filesystem("data/sample")          # or "s3://bucket/prefix"
    >>> for p in discover(fs, root):
    ...     print(p.uri, p.format, p.hive)                   # doctest: +SKIP

Discovery lists the root recursively through a ``pyarrow.fs.FileSystem``, local or S3 alike (or only the
folders the filters can match: :mod:`shards.listing`), ignores what writers leave beside data (``_SUCCESS``,
``_metadata``, ``.crc`` and other hidden files, ``_temporary/`` folders), reads ``key=value`` folder names
as hive keys, and returns partitions sorted by path so every run sees them in the same order.
:func:`hold_back` then keeps back files still being written: folders whose ``_SUCCESS`` marker has not
appeared, folders a committer is staging files in, in-progress names, and files younger than a minimum age.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Literal

import pyarrow.fs as pafs

from shards.errors import ConfigError
from shards.links import LeftOut, list_folder
from shards.options import option
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
    return SettledS3FileSystem(S3Settings.from_env())


class SettledS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem built from :class:`~shards.s3settings.S3Settings`, which it pickles as.

    pyarrow pickles an ``S3FileSystem`` as its constructor's options without the retry strategy, so a
    filesystem shipped to Ray workers would forget ``AWS_MAX_ATTEMPTS``; this one is rebuilt on each worker
    from the settings the driver parsed (which hold no credential: each process uses the AWS chain).
    """

    def __init__(self, settings: S3Settings) -> None:
        retry = pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts)
        super().__init__(retry_strategy=retry, **settings.pyarrow_options())
        self.settings = settings

    def __reduce__(self) -> tuple[type, tuple[S3Settings]]:  # type: ignore[override]
        return (type(self), (self.settings,))


def _uri(fs: pafs.FileSystem, path: str) -> str:
    return f"s3://{path}" if fs.type_name == "s3" else path


def root_uri(partitions: list[Partition]) -> str | None:
    """The folder the partitions' keys are relative to, as a URI (None without partitions)."""
    if not partitions:
        return None
    first = partitions[0]
    return first.uri[: len(first.uri) - len(first.key)].rstrip("/")


def _ignored(relative: str) -> bool:
    """Writer leftovers: hidden and ``_``-prefixed names (``_SUCCESS``, ``_temporary/``), Kafka Connect's
    ``+tmp/`` staging folders, checksum files."""
    return any(part.startswith(("_", ".")) or part == "+tmp" for part in relative.split("/")) or relative.endswith(
        ".crc"
    )


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


@dataclass(frozen=True)
class Listing:
    """The files (and folders) listed under an input root: every one (one recursive listing), or those a
    bounded walk (:mod:`shards.listing`) reached. ``context`` holds readiness markers found outside them,
    ``calls`` counts the listings made, ``entries`` what they returned, ``pruned`` the folders not descended
    into, ``left_out`` the symbolic links not followed, with the reason (:mod:`shards.links`)."""

    base: str
    infos: list[pafs.FileInfo]
    uri: str
    context: list[pafs.FileInfo] = field(default_factory=list)
    calls: int = 1
    entries: int = 0
    pruned: int = 0
    left_out: list[LeftOut] = field(default_factory=list)


def input_uri(fs: pafs.FileSystem, root: str) -> str:
    """The URI partition keys under ``root`` are relative to: the root, or a single file's folder."""
    root = root.rstrip("/")
    if fs.get_file_info(root).type == pafs.FileType.File:
        return _uri(fs, root.rsplit("/", 1)[0])
    return _uri(fs, root)


def list_input(fs: pafs.FileSystem, root: str, *, follow_symlinks: bool = False) -> Listing:
    """List ``root`` recursively (a single file lists itself); on a local filesystem symbolic links leading
    out of it are left out unless ``follow_symlinks`` (:mod:`shards.links`). Raises ConfigError when it does
    not exist."""
    root = root.rstrip("/")
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"input {_uri(fs, root)!r} does not exist")
    if info.type == pafs.FileType.File:
        base = root.rsplit("/", 1)[0]
        return Listing(base, [info], _uri(fs, base), entries=1)
    infos, left_out = list_folder(fs, root, root=root, recursive=True, follow=follow_symlinks)
    return Listing(root, infos, _uri(fs, root), entries=len(infos), left_out=left_out)


def partitions_of(
    fs: pafs.FileSystem, listing: Listing, *, forced_format: str = "auto", glob: str | None = None
) -> list[Partition]:
    """The listing's data files as partitions, sorted by path (writer leftovers and hidden files left out)."""
    if forced_format not in ("auto", *FORMATS):
        raise ConfigError(f"unknown format {forced_format!r}; choose auto, {', '.join(FORMATS)}")
    found = []
    for item in listing.infos:
        if item.type != pafs.FileType.File:
            continue
        relative = item.path[len(listing.base) :].lstrip("/")
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


def discover(
    fs: pafs.FileSystem, root: str, *, forced_format: str = "auto", glob: str | None = None
) -> list[Partition]:
    """Every partition under ``root``, sorted by path. Raises ConfigError when the root does not exist."""
    return partitions_of(fs, list_input(fs, root), forced_format=forced_format, glob=glob)


MARKER = "_SUCCESS"
MARKER_MODES = ("auto", "always", "never")
#: names that writers and copy tools give a file until it is complete
IN_PROGRESS_SUFFIXES = (
    ".tmp",
    ".temp",
    ".inprogress",
    ".in-progress",
    ".incomplete",
    ".partial",
    ".part",
    ".writing",
    ".uploading",
    ".copying",
    ".filepart",
    ".crdownload",
    ".gstmp",
)
#: the folder Hadoop's and Spark's file committers stage a job's files in, beside the job's output
STAGING_FOLDERS = ("_temporary",)


@dataclass(frozen=True)
class Readiness:
    """When a file counts as completely written.

    ``success_marker``: ``auto`` requires a ``_SUCCESS`` in the file's folder or a folder above it (up to the
    input root) once any folder under the input holds one, so an input written by Spark, Hadoop or Hive is
    read only where its job finished, while an input of plain files, which has no marker anywhere, is read as
    it is; ``always`` requires the marker everywhere; ``never`` ignores markers. Except with ``never``, files
    in or below a folder holding ``_temporary/`` wait too (a Hadoop committer is moving files in).
    ``min_file_age``: files modified fewer seconds ago wait (for writers that leave no marker).
    """

    success_marker: str = option(
        "auto",
        "read a folder only once its _SUCCESS marker (or one above it) exists: auto (wherever the input has any "
        "marker), always (alone: always) or never; folders holding _temporary/ wait unless never",
        flag="--require-success-marker",
        choices=MARKER_MODES,
        const="always",
    )
    min_file_age: float = option(
        0.0, "leave files modified fewer seconds ago for a later run (writers that leave no marker)", metavar="SECONDS"
    )

    def __post_init__(self) -> None:
        if self.success_marker not in MARKER_MODES:
            raise ConfigError(
                f"--require-success-marker must be {', '.join(MARKER_MODES)}, got {self.success_marker!r}"
            )
        if self.min_file_age < 0:
            raise ConfigError(f"--min-file-age must not be negative, got {self.min_file_age}")


def _folders(relative: str) -> list[str]:
    """A file's folder and every folder above it up to the root (``""``), innermost first."""
    parts = relative.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def hold_back(
    listing: Listing, partitions: list[Partition], readiness: Readiness, now: float
) -> tuple[list[Partition], list[tuple[Partition, str]]]:
    """Split partitions into those completely written and those still being written (with the reason).

    Files that wait are not consumed, so a later run picks them up once their writer is done.
    """
    markers: set[str] = set()
    staging: set[str] = set()
    for item in [*listing.infos, *listing.context]:
        parts = item.path[len(listing.base) :].strip("/").split("/")
        if item.type == pafs.FileType.File and parts[-1] == MARKER:
            markers.add("/".join(parts[:-1]))
        folders = parts if item.type == pafs.FileType.Directory else parts[:-1]
        for i, name in enumerate(folders):
            if name in STAGING_FOLDERS:
                staging.add("/".join(parts[:i]))
                break
    need_marker = readiness.success_marker == "always" or (readiness.success_marker == "auto" and bool(markers))
    ready, waiting = [], []
    for p in partitions:
        folders = _folders(p.key)
        age = now - p.mtime_ns / 1e9
        writing = next((f for f in folders if f in staging), None) if readiness.success_marker != "never" else None
        if p.name.lower().endswith(IN_PROGRESS_SUFFIXES):
            waiting.append((p, "an in-progress name (its writer has not renamed it yet)"))
        elif writing is not None:
            where = f"{writing}/" if writing else "the input root"
            waiting.append((p, f"{where} holds a staging folder (a job is writing there; remove it if the job died)"))
        elif need_marker and not any(f in markers for f in folders):
            waiting.append((p, f"no {MARKER} in its folder or above yet (see --require-success-marker)"))
        elif age < readiness.min_file_age:
            waiting.append((p, f"modified {max(age, 0):.0f} s ago (--min-file-age {readiness.min_file_age:g})"))
        else:
            ready.append(p)
    return ready, waiting


DATE_KEYS = ("dt", "date", "day", "ds")


def day_of(partition: Partition) -> str:
    """The partition's date: the value of its ``dt``/``date``/``day``/``ds`` folder, else its modification
    time's UTC date (``YYYY-MM-DD``). What ``since`` and ``until`` compare."""
    keys = dict(partition.hive)
    day = next((keys[k] for k in DATE_KEYS if k in keys), None)
    if day is None:
        day = datetime.datetime.fromtimestamp(partition.mtime_ns / 1e9, datetime.timezone.utc).date().isoformat()
    return day


def in_dates(day: str, since: str | None, until: str | None) -> bool:
    """Whether a date (or a date folder's value) is on or after ``since`` and on or before ``until``, both
    inclusive, each compared on its own length: ``until="2026-11"`` keeps the whole of November."""
    return (since is None or day[: len(since)] >= since) and (until is None or day[: len(until)] <= until)


def oldest_first(partitions: list[Partition]) -> list[Partition]:
    """The partitions by age: their date folder, else their modification time (to the nanosecond, so files
    without date folders keep the order they were written in), the path breaking ties."""

    def age(p: Partition) -> tuple[str, int, str]:
        keys = dict(p.hive)
        day = next((keys[k] for k in DATE_KEYS if k in keys), None)
        if day is not None:
            return day, 0, p.path
        return day_of(p), p.mtime_ns, p.path

    return sorted(partitions, key=age)


def select(
    partitions: list[Partition],
    *,
    since: str | None = None,
    until: str | None = None,
    where: tuple[tuple[str, str], ...] = (),
    glob: str | None = None,
) -> list[Partition]:
    """Keep partitions dated (:func:`day_of`) on or after ``since`` and on or before ``until`` (ISO dates or
    their prefixes, both inclusive) whose hive keys match every ``(key, glob)`` of ``where`` and whose path
    below the root matches ``glob``."""
    kept = []
    for p in partitions:
        if glob and not fnmatch.fnmatch(p.key, glob):
            continue
        keys = dict(p.hive)
        if any(key not in keys or not fnmatch.fnmatch(keys[key], pattern) for key, pattern in where):
            continue
        if (since is not None or until is not None) and not in_dates(day_of(p), since, until):
            continue
        kept.append(p)
    return kept
