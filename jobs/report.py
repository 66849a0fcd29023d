"""The end of a refresh: its summary, printed for a human and, on request, as one JSON line.

    >>> summary = Summary(version="v2", parent="v1", published=True, partitions=3, tokens=10_000)
    >>> print(human(summary))                                  # doctest: +SKIP
    >>> print(json_line(summary))                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """What a refresh did. Contains no configuration values that could hold secrets."""

    version: str | None
    parent: str | None
    published: bool
    partitions: int = 0
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    new_words: int = 0
    vocab_size: int = 0
    seconds: float = 0.0
    store: str = ""
    message: str = ""
    rejected: list[dict[str, str]] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    neighbours: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def json_line(summary: Summary) -> str:
    data = dataclasses.asdict(summary)
    data["seconds"] = round(summary.seconds, 3)
    data["timings"] = {k: round(v, 3) for k, v in summary.timings.items()}
    return json.dumps(data, sort_keys=True)


def human(summary: Summary) -> str:
    if not summary.published:
        lines = [f"Nothing published: {summary.message}"]
    else:
        lines = [
            f"Published {summary.version} to {summary.store} (parent: {summary.parent or 'none, first model'})",
            f"  partitions {summary.partitions:,}   documents {summary.documents:,}   "
            f"sentences {summary.sentences:,}   tokens {summary.tokens:,}",
            f"  vocabulary {summary.vocab_size:,} words, {summary.new_words:,} new",
            "  time " + "  ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items())
            + f"  total {summary.seconds:.1f}s",
        ]
        for word, near in list(summary.neighbours.items())[:5]:
            lines.append(f"  new word {word!r}: " + ", ".join(w for w, _ in near))
    for bad in summary.rejected:
        lines.append(f"  rejected {bad['uri']}: {bad['cause']}")
    for uri in summary.rewritten:
        lines.append(f"  rewritten since consumed (not retrained): {uri}")
    return "\n".join(lines)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
