"""A local store that counts what is read from it."""

from __future__ import annotations

from pathlib import Path

from jobs.storage import LocalStore, Pointer


class CountingStore(LocalStore):
    """A real local store that counts what it hands out (the seam: what reached the network): the files
    downloaded, the objects read, the listings (with their limit) and the pointer reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.downloads: list[str] = []
        self.reads: list[str] = []
        self.listings: list[tuple[str, int | None]] = []
        self.pointer_reads = 0

    def get_file(self, key: str, destination: Path) -> None:
        self.downloads.append(key.rsplit("/", 1)[-1])
        super().get_file(key, destination)

    def get_bytes(self, key: str, limit: int | None = None) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key, limit)

    def list_keys(self, folder: str, limit: int | None = None) -> list[str]:
        self.listings.append((folder, limit))
        return super().list_keys(folder, limit)

    def read_pointer(self) -> Pointer | None:
        self.pointer_reads += 1
        return super().read_pointer()
