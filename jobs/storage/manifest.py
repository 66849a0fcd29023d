"""What a version's manifest says, typed: parsed and checked in one place, and written back byte for byte.

A manifest is the JSON object ``versions/<version>/manifest.json``: the version's files (size and SHA-256
each), its parent, and what the run that made it recorded (the model, the training settings, the counts, the
lineage's sections). Every reader gets a :class:`Manifest` from :func:`Manifest.parse`, which checks first
everything in it that names a file or a version (:func:`jobs.storage.names.check_manifest`: anyone who can
write to a store writes these bytes), then the type of every field it exposes:

    >>> m = Manifest.parse(data, "s3://models/w2v", "20261124T020000Z-ab12cd")        # doctest: +SKIP
    >>> m.parent, m.tokens, m.files["model/params.json"].size, m.pickled               # doctest: +SKIP

Nothing is lost: ``data`` keeps the bytes as read (a signature covers exactly them, so a manifest read is never
re-serialised to be written again: gc puts back ``data``), :meth:`Manifest.to_dict` gives every key, the ones a
newer writer added included, and :meth:`Manifest.create` makes a new manifest's bytes the way every version
has been written (sorted keys, two-space indent, ``format`` 1), so ``create(m.to_dict()).data == m.data`` for
every manifest this project wrote. Sections that a lineage module owns (``lineage``, ``rejections``,
``tables``) stay plain data for that module to read (:meth:`Manifest.section`). A manifest is also a read-only
mapping of its JSON keys, for code that still reads it by key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import IntegrityError
from jobs.storage.names import MODEL_DIR, check_file, check_manifest, shown

MANIFEST_FORMAT = 1
MODEL_PARAMS = f"{MODEL_DIR}/params.json"  # present in every version of the pickle-free format


@dataclass(frozen=True)
class FileEntry:
    """One file of a version, as its manifest records it."""

    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, eq=False)
class Manifest(Mapping[str, Any]):
    """A version's manifest: the fields readers use, typed, over the JSON object (``raw``) and its bytes."""

    version: str
    parent: str | None
    files: Mapping[str, FileEntry]
    format: int | None  # None: written before the field existed
    created_at: str | None
    model: str | None  # the model's kind (word2vec, fasttext); None in hand-made manifests
    training: Mapping[str, Any]  # the model's settings (vector_size, ...)
    tokens: int
    vocab_size: int
    new_words_sample: tuple[str, ...]
    lifecycle: Mapping[str, Any]
    evaluation: Mapping[str, Any]  # the quality gate's passed, reasons and checks
    learning_rate: Mapping[str, Any]
    ledger: Mapping[str, Any]  # the ledger section: the chain of delta files the version's ledger is read from
    carried_from: str | None  # a version that reuses its parent's model files
    converted_from: str | None  # a version rewritten from the pickled format
    imported_from: Mapping[str, Any] | None  # the first version of a lineage, made from a model file
    raw: dict[str, Any] = field(repr=False)
    data: bytes = field(repr=False)

    # -- reading ---------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, store: str, version: str) -> Manifest:
        """The manifest ``data``, read as ``version`` of ``store``. Raises IntegrityError when it is not JSON,
        names a file or version it may not (:func:`~jobs.storage.names.check_manifest`), or holds a field of
        the wrong type."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise IntegrityError(f"the manifest of {version} in {store} is not valid JSON") from exc
        return cls.of(check_manifest(raw, store, version), data, f"the manifest of {version} in {store}")

    @classmethod
    def create(cls, fields: Mapping[str, Any]) -> Manifest:
        """A new manifest of ``fields`` (which name its version and files), with the bytes every version is
        written as. Raises IntegrityError for a field of the wrong type."""
        raw = {"format": MANIFEST_FORMAT, **fields}
        data = json.dumps(raw, indent=2, sort_keys=True).encode()
        return cls.of(json.loads(data), data, f"the manifest of {fields.get('version')}")

    @classmethod
    def of(cls, raw: dict[str, Any], data: bytes, where: str) -> Manifest:
        """The typed view of ``raw``, the JSON object whose bytes are ``data``."""
        check = _Fields(raw, where)
        files = raw.get("files")
        if not isinstance(files, dict) or not isinstance(raw.get("version"), str):
            raise IntegrityError(f"{where} names no version or lists no files; refusing to read it")
        entries = {}
        for name, entry in files.items():
            if not (
                isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)
            ):
                raise IntegrityError(f"{where}: the entry of {shown(name)} is not a size and a SHA-256")
            entries[name] = FileEntry(entry["size"], entry["sha256"])
        sample = check.get("new_words_sample", list, [])
        return cls(
            version=raw["version"],
            parent=check.text("parent"),
            files=entries,
            format=check.get("format", int, None),
            created_at=check.text("created_at"),
            model=check.text("model"),
            training=check.get("training", dict, {}),
            tokens=check.get("tokens", int, 0),
            vocab_size=check.get("vocab_size", int, 0),
            new_words_sample=tuple(str(word) for word in sample),
            lifecycle=check.get("lifecycle", dict, {}),
            evaluation=check.get("evaluation", dict, {}),
            learning_rate=check.get("learning_rate", dict, {}),
            ledger=check.get("ledger", dict, {}),
            carried_from=check.text("carried_from"),
            converted_from=check.text("converted_from"),
            imported_from=check.get("imported_from", dict, None),
            raw=raw,
            data=data,
        )

    # -- what readers ask ------------------------------------------------------------------------------------

    @property
    def pickled(self) -> bool:
        """Whether the version's model is in the previous, pickled format (no ``model/params.json``)."""
        return MODEL_PARAMS not in self.files

    @property
    def model_names(self) -> list[str]:
        """The model's files (everything under ``model/``), each checked to be a file a version may hold."""
        names = [name for name in self.files if name.startswith(f"{MODEL_DIR}/")]
        for name in names:
            check_file(name, "the store", self.version)
        return names

    @property
    def partitions_consumed(self) -> int:
        """How many partitions the version consumed (its manifest names at most the first thousand)."""
        return partitions_consumed(self.raw)

    @property
    def vector_size(self) -> int | None:
        """The model's vector size as its training settings record it (None when they do not)."""
        size = self.training.get("vector_size")
        return size if type(size) is int else None

    def section(self, name: str) -> Any:
        """The section ``name`` as written (None when absent), for the module that owns it to check and read."""
        return self.raw.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Every key of the manifest, a copy the caller may change (:meth:`create` makes a new manifest of it)."""
        return copy.deepcopy(self.raw)

    # -- a read-only mapping of the JSON keys ----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def partitions_consumed(raw: Mapping[str, Any]) -> int:
    """How many partitions the manifest ``raw`` says its version consumed: its ``consumed`` summary, or, in a
    manifest from before the summary, the partitions it names."""
    summary = raw.get("consumed")
    if isinstance(summary, dict) and type(summary.get("partitions")) is int:
        return int(summary["partitions"])
    named = raw.get("partitions")
    return len(named) if isinstance(named, list) else 0


class _Fields:
    """Type checks of a manifest's optional fields: absent or null is the default, anything else must fit."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        self.raw, self.where = raw, where

    def get(self, key: str, kind: type, default: Any) -> Any:
        value = self.raw.get(key)
        if value is None:
            return default
        if type(value) is not kind:
            raise IntegrityError(f"{self.where}: its {key!r} is {shown(value)}, not a {kind.__name__}")
        return value

    def text(self, key: str) -> str | None:
        value: str | None = self.get(key, str, None)
        return value
