"""What an attacker with write access to a store would plant: a pickle that runs code when unpickled.

The payload only creates a file (the canary), so a test can prove that nothing unpickled it.
"""

from __future__ import annotations

import pickle
from pathlib import Path


class Planted:
    """Unpickling this calls ``open(canary, "w")``: the file appears if and only if something unpickled it."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.canary), "w"))


def planted_pickle(canary: Path) -> bytes:
    return pickle.dumps(Planted(canary))
