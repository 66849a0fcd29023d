"""Keeping a local input inside itself: symbolic links that lead out of it are not listed and not read.

    from shards.links import list_folder
    infos, left_out = list_folder(fs, "/data/events", root="/data/events", recursive=True)
    [(link, why) for link, why in left_out]                              # doctest: +SKIP
    [('/data/events/dt=1/x.txt', 'a symbolic link to /home/etl/.ray/auth_token, outside the input ...')]

pyarrow's local filesystem follows every symbolic link: a link in the input to a file elsewhere would be
read, and its tokens would land in the model's vocabulary. So a local input is first searched for links
(:func:`os.scandir` over its folders, no file opened): without any, pyarrow lists it in one recursive call
as before; with some, it is walked here one folder at a time, and a link is kept only where its real path
lies inside the input's real path (or with ``follow``, ``--follow-symlinks``). A link to a folder that holds
it (a loop) is never descended, and a broken link is left out; every link left out is returned with the
reason, for the job to log. Other filesystems (S3) have no links and are listed by pyarrow.

:func:`check_inside` repeats the check when a partition is opened, so a file replaced by a link after the
listing is not read either (a link swapped in between that check and the open itself is not caught).
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from shards.errors import PartitionError

LeftOut = tuple[str, str]  # (the link's path, why it was left out)


def local(fs: pafs.FileSystem) -> bool:
    """Whether ``fs`` is the local filesystem, where paths may be symbolic links."""
    return bool(fs.type_name == "local")


def inside(path: str, root: str) -> bool:
    """Whether the real path of ``path`` lies in the real path of ``root``."""
    return _within(os.path.realpath(path), os.path.realpath(root))


def _within(real: str, base: str) -> bool:
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def list_folder(
    fs: pafs.FileSystem, folder: str, *, root: str, recursive: bool = False, follow: bool = False
) -> tuple[list[pafs.FileInfo], list[LeftOut]]:
    """The entries of ``folder`` (and below, if ``recursive``) as pyarrow lists them, except, on a local
    filesystem, symbolic links leading out of ``root`` (unless ``follow``), loops and broken links, which are
    returned apart with the reason."""
    if not local(fs) or (recursive and not _links_below(folder)):  # the common case: one recursive listing
        return fs.get_file_info(pafs.FileSelector(folder, recursive=recursive)), []
    base = os.path.realpath(root)
    infos: list[pafs.FileInfo] = []
    left_out: list[LeftOut] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        # Which entries are links, from the folder itself (no stat); pyarrow lists the entries with their
        # sizes and times, following links. An entry swapped in between is caught when it is read.
        with os.scandir(current) as entries:
            links = {entry.name for entry in entries if entry.is_symlink()}
        for info in fs.get_file_info(pafs.FileSelector(current, recursive=False)):
            if info.base_name in links:
                links.discard(info.base_name)
                why = _why_not(info.path, base, follow)
                if why is not None:
                    left_out.append((info.path, why))
                    continue
            infos.append(info)
            if recursive and info.type == pafs.FileType.Directory:
                pending.append(info.path)
        left_out += [(f"{current.rstrip('/')}/{name}", "a broken symbolic link") for name in sorted(links)]
    return infos, left_out


def _links_below(folder: str) -> bool:
    """Whether a symbolic link lies anywhere below ``folder`` (a walk that reads folders, not files)."""
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    return True
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return False


def _why_not(link: str, base: str, follow: bool) -> str | None:
    """Why the symbolic link ``link`` is left out, or None to follow it."""
    target = os.path.realpath(link)
    if not os.path.exists(target):
        return "a broken symbolic link"
    if os.path.isdir(target) and _above(link, target):
        return f"a symbolic link to {target}, a folder that holds it (a loop)"
    if not follow and not _within(target, base):
        return f"a symbolic link to {target}, outside the input (see --follow-symlinks)"
    return None


def _above(link: str, target: str) -> bool:
    """Whether ``target`` is the real path of a folder on the way to ``link``: descending it would loop."""
    folder = os.path.dirname(link)
    while True:
        if os.path.realpath(folder) == target:
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def check_inside(fs: pafs.FileSystem, uri: str, path: str, key: str) -> None:
    """Refuse to open a local partition whose real path has left its input (the folder ``path`` is ``key``
    below) since it was listed. Raises PartitionError."""
    if not local(fs) or not key or not path.endswith(key):
        return
    root = path[: len(path) - len(key)].rstrip("/") or "/"
    if not inside(path, root):
        raise PartitionError(
            uri, f"a symbolic link to {os.path.realpath(path)}, outside the input: not read (see --follow-symlinks)"
        )
