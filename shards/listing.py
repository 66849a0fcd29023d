"""Listing an input only where the filters can match: date and hive folders outside them are never listed.

    from shards.listing import Bounds, list_bounded
    listing = list_bounded(fs, root, Bounds(since="2026-11-29", until="2026-11-30", where=(("region", "eu-*"),)))
    listing.calls, listing.pruned                         # doctest: +SKIP

Without bounds the root is listed recursively in one call (:func:`shards.partitions.list_input`; on S3 one
paginated listing without a delimiter, the fewest requests). With bounds the root is walked one folder level
at a time (on S3 one listing with a delimiter per folder), and a ``key=value`` folder whose value the bounds
rule out is not descended into: a ``dt``/``date``/``day``/``ds`` folder before ``since`` or after ``until``
(compared as :func:`shards.partitions.select` compares it, so a month folder ``dt=2026-10`` is before
``2026-11-05``), and a
``key`` folder that ``where`` names with a value its pattern does not match. The walk keeps what readiness
needs (:func:`shards.partitions.hold_back`): every file and folder entry of the folders it lists (``_SUCCESS``
markers above a partition, ``_temporary/`` folders, which are not descended into), and, where it skips date
folders, the markers in the newest skipped one (:attr:`~shards.partitions.Listing.context`), so an input
written with markers still needs them where only today's folder is listed and its marker has not appeared.

Pruning is exact for layouts where a key appears once on a path, and where one date key names a partition's
day; a path with two date keys (``date=…/dt=…``) is pruned on each of them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import pyarrow.fs as pafs

from shards.errors import ConfigError
from shards.links import LeftOut, list_folder
from shards.partitions import DATE_KEYS, MARKER, Listing, _ignored, _uri, in_dates, list_input


@dataclass(frozen=True)
class Bounds:
    """What the filters say about folders before their files are listed: ``since`` and ``until`` (ISO dates
    or their prefixes, both inclusive) rule out date folders before and after them; ``where`` (``(key, glob)``
    pairs) rules out ``key=`` folders whose value does not match."""

    since: str | None = None
    where: tuple[tuple[str, str], ...] = ()
    until: str | None = None

    @property
    def prunes(self) -> bool:
        return self.since is not None or self.until is not None or bool(self.where)

    def rules_out(self, name: str) -> str | None:
        """Why the folder ``name`` holds nothing selected (``"date"`` or ``"where"``), or None."""
        key, sep, value = name.partition("=")
        if not sep:
            return None
        if key in DATE_KEYS and not in_dates(value, self.since, self.until):
            return "date"
        if any(key == k and not fnmatch.fnmatch(value, pattern) for k, pattern in self.where):
            return "where"
        return None


def list_bounded(
    fs: pafs.FileSystem, root: str, bounds: Bounds = Bounds(), *, follow_symlinks: bool = False
) -> Listing:
    """The files under ``root`` that ``bounds`` do not rule out (every file without bounds), with the folder
    entries and markers readiness needs; on a local filesystem, symbolic links leading out of ``root`` are
    left out unless ``follow_symlinks`` (:mod:`shards.links`). Raises ConfigError when the root does not
    exist."""
    if not bounds.prunes:
        return list_input(fs, root, follow_symlinks=follow_symlinks)
    root = root.rstrip("/")
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"input {_uri(fs, root)!r} does not exist")
    if info.type == pafs.FileType.File:
        return list_input(fs, root)
    infos: list[pafs.FileInfo] = []
    context: list[pafs.FileInfo] = []
    left_out: list[LeftOut] = []
    calls, entries, pruned, pending = 0, 0, 0, [root]
    while pending:
        folder = pending.pop()
        children, links = list_folder(fs, folder, root=root, follow=follow_symlinks)
        left_out += links
        calls, entries = calls + 1, entries + len(children)
        skipped_days: list[pafs.FileInfo] = []
        for child in children:
            if child.type != pafs.FileType.Directory:
                infos.append(child)
                continue
            why = None if _ignored(child.base_name) else bounds.rules_out(child.base_name)
            if why is None:
                infos.append(child)  # a staging folder's entry is what readiness looks for; never descended
                if not _ignored(child.base_name):
                    pending.append(child.path)
                continue
            pruned += 1
            if why == "date":
                skipped_days.append(child)
        if skipped_days:
            newest = max(skipped_days, key=lambda d: d.base_name)
            below, _ = list_folder(fs, newest.path, root=root, recursive=True, follow=follow_symlinks)
            calls, entries = calls + 1, entries + len(below)
            context.extend(i for i in below if i.type == pafs.FileType.File and i.base_name == MARKER)
    return Listing(
        root, infos, _uri(fs, root), context=context, calls=calls, entries=entries, pruned=pruned, left_out=left_out
    )
