"""A filesystem seam for fault tests: the local filesystem, except that opening a file whose name starts
with ``crash`` kills the process reading it at once (``os._exit``), as a segfault in a reader or the
kernel's OOM killer would, and opening one whose name holds ``slow`` takes ``SLOW_SECONDS`` (a read that a
node's death can interrupt), or as many seconds as follow it (``b-slow3.parquet``: 3). Ray workers import it
from here when they unpickle the filesystem."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pyarrow.fs as pafs

SLOW_SECONDS = 30.0


class CrashingFileSystem(pafs.FileSystemHandler):
    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())

    def _check(self, path: str) -> str:
        if os.path.basename(path).startswith("crash"):
            os._exit(13)
        slow = re.search(r"slow(\d*)", os.path.basename(path))
        if slow:
            time.sleep(float(slow.group(1) or SLOW_SECONDS))
        return path

    def get_type_name(self) -> str:
        return "crashing"

    def normalize_path(self, path: str) -> str:
        return path

    def equals(self, other: Any) -> bool:
        return isinstance(other, CrashingFileSystem)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.local.get_file_info(selector)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(self._check(path))

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(self._check(path))

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only
