"""A read-only filesystem seam: a real filesystem (local, or S3 against moto) recording every listing asked of it
(the folder and whether recursively), so a test can assert which prefixes discovery listed; tests that watch
other calls (which process opens a file, a read that fails) build on it."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs


class CountingFileSystem(pafs.FileSystemHandler):
    def __init__(self, inner: pafs.FileSystem | None = None) -> None:
        self.local = inner or pafs.LocalFileSystem()
        self.listed: list[tuple[str, bool]] = []

    def get_type_name(self) -> str:
        return "counting"

    def normalize_path(self, path: str) -> str:
        return path

    def equals(self, other: Any) -> bool:
        return other is self

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self.listed.append((selector.base_dir, selector.recursive))
        return self.local.get_file_info(selector)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def counting(handler: CountingFileSystem) -> pafs.FileSystem:
    return pafs.PyFileSystem(handler)
