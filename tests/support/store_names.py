"""What the store-name tests share: names a store may hold, and the refusals of those it may not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import IntegrityError
from jobs.storage import Store
from jobs.storage.publish import publish


def legit(tmp_path: Path, store: Store, version: str) -> dict[str, Any]:
    out = tmp_path / f"out-{version}"
    (out / "model").mkdir(parents=True)
    (out / "model" / "params.json").write_bytes(b"{}")
    (out / "model" / "weights.npy").write_bytes(b"w" * 1000)
    (out / "pending.parquet").write_bytes(b"p")
    return publish(store, version, out, {}, expected=store.read_pointer())


def refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        call()
    assert message in str(caught.value), str(caught.value)
