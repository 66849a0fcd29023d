"""The refresh's flags for tiny test runs: small vectors, few epochs, every word kept, few tasks in flight;
tests about tokenizing tasks turn off tokenizing small increments in the trainer (``tokenize_in_trainer_below=0``).

Each test module names only what it needs different (``fast(workers=1, epochs=1)``); a setting given as None
is left to the job's default.
"""

from __future__ import annotations

_FLAGS = {
    "workers": "--workers",
    "vector_size": "--vector-size",
    "epochs": "--epochs",
    "min_count": "--min-count",
    "max_in_flight": "--max-in-flight",
    "tokenize_in_trainer_below": "--tokenize-in-trainer-below",
}


def fast(
    *,
    workers: int | None = 2,
    vector_size: int | None = 16,
    epochs: int | None = 2,
    min_count: int | None = 1,
    max_in_flight: int | None = None,
    tokenize_in_trainer_below: int | None = None,
) -> list[str]:
    """The flag list for a tiny, quick refresh.

    >>> fast()
    ['--workers', '2', '--vector-size', '16', '--epochs', '2', '--min-count', '1']
    >>> fast(workers=None, vector_size=None, min_count=None, epochs=3, max_in_flight=3)
    ['--epochs', '3', '--max-in-flight', '3']
    """
    values = {
        "workers": workers,
        "vector_size": vector_size,
        "epochs": epochs,
        "min_count": min_count,
        "max_in_flight": max_in_flight,
        "tokenize_in_trainer_below": tokenize_in_trainer_below,
    }
    return [part for name, value in values.items() if value is not None for part in (_FLAGS[name], str(value))]
