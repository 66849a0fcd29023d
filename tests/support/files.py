"""Files for tests: Parquet partitions, and a store's bytes snapshotted to prove it was left as it was."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet(path: Path, texts: list[str | None], column: str = "text") -> Path:
    """Write one Parquet partition holding ``texts``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: pa.array(texts, pa.string())}), path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a store was left exactly as it was: its versions
    and its pointer. The run records under ``runs/`` are left out: every run adds one, whatever its outcome."""
    if not folder.exists():
        return {}
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in files if not p.relative_to(folder).match("runs/*")
    }
