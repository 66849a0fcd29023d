"""Import an existing model as the first version of a lineage: ``python -m jobs.versions import``.

    python -m jobs.versions import pretrained.model --store models
    python -m jobs.versions import cc.en.300.bin --store s3://models/ft --mark-consumed s3://corpus/events \\
        --consumed-before 2026-11-01

The runbook, in order:

1. open the store and read the pointer; a store with a current version is refused unless ``--new-lineage``;
2. list the partitions to mark as consumed (``--mark-consumed INPUT``, optionally ``--consumed-before DATE``),
   so that the first refresh trains only on newer data;
3. read and validate the file (:mod:`jobs.training.adopt`); nothing has been written yet, so a refusal leaves
   the store exactly as it was;
4. save the model with the trainer's own save path, the seeded ledger and empty remembered counts, upload
   them as a new version, write its manifest (``imported_from``, no parent);
5. make it current with one conditional write of the pointer (a create on an empty store).

A gensim ``save()`` file is a pickle, and importing it unpickles it, as gensim's ``load()`` does: import only
files you trust. It is unpickled only when the user says so (``--kind gensim``, or ``--allow-pickle``); with
``--kind auto`` the file's real format decides between fastText and word2vec, and a pickle is refused
(:func:`jobs.training.adopt.choose`). Nothing else in the tool unpickles a file whose checksums it has not
verified.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.config import ImportConfig, to_dict
from jobs.errors import ImportRefused
from jobs.lineage import ledger
from jobs.lineage.counts import PENDING, write_counts
from jobs.storage import open_store, signed
from jobs.storage.publish import Draft, current, new_version
from jobs.training import adopt
from jobs.training import model as gmodel
from jobs.vectors import cache_root
from shards.partitions import Partition, Readiness, hold_back, list_input, open_filesystem, partitions_of, select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    """What an import published."""

    version: str
    store: str
    kind: str
    words: int
    vector_size: int
    seeded_partitions: int
    replaced: str | None
    notes: list[str]
    seconds: float


def run(config: ImportConfig) -> Imported:
    """Import ``config.path`` into ``config.store``. Raises ImportRefused (the file), ConfigError (the flags,
    the store's current version) or StoreError; the store is then as it was."""
    started = time.perf_counter()
    path = Path(config.path)

    # 1. The store: refused early if it already has a lineage (cheaper than reading a large model first).
    store = open_store(config.store, signed.load(config.signing, cache_root()))
    pointer = current(store)
    if pointer is not None and not config.new_lineage:
        raise ImportRefused(
            f"cannot import {path}: the store {store.uri} already has a current version ({pointer.version}). "
            "Import into an empty store, or pass --new-lineage to make the imported model current there "
            f"(refreshes then build on it; {pointer.version} stays in the store and can be promoted back)"
        )

    # 2. The partitions the model already saw, found before anything is written.
    seeded, input_root = consumed_partitions(config)

    # 3. Read and validate the file (unpickled only with --kind gensim or --allow-pickle, saying so).
    source = adopt.read(
        path,
        config.kind,
        allow_pickle=config.allow_pickle,
        adopt=config.adopt_vectors,
        counts_file=Path(config.counts) if config.counts else None,
        training=config.training,
    )
    for note in source.notes:
        log.warning("%s: %s", path.name, note)

    # 4. Save, upload and describe the version; 5. commit: a conditional create of the pointer (or a swap from
    # the one read in step 1). What an upload left behind is removed if the manifest was not written.
    version = new_version()
    gmodel.imported(source.model, version=version, file=path.name, sha256=source.imported_from["sha256"])
    with tempfile.TemporaryDirectory(prefix="embedding-import-") as tmp, Draft(store, version) as draft:
        out = Path(tmp)
        gmodel.save(source.model, out)
        write_counts(out / PENDING, {})
        seeded_ledger = ledger.write(ledger.empty(), seeded, version, input_root, compact_every=1)  # a full one
        (out / seeded_ledger.name).write_bytes(seeded_ledger.data)
        (out / "config.json").write_text(json.dumps(_recorded(config), indent=2, sort_keys=True))
        draft.upload(out, lambda name: log.info("uploaded %s/%s", version, name))
        fields = manifest_fields(config, version, source, seeded)
        draft.commit({**fields, "ledger": seeded_ledger.section}, pointer)
    log.info("imported %s as %s in %s", path, version, store.uri)
    return Imported(
        version=version,
        store=store.uri,
        kind=source.kind,
        words=source.imported_from["words"],
        vector_size=source.imported_from["vector_size"],
        seeded_partitions=len(seeded),
        replaced=pointer.version if pointer else None,
        notes=source.notes,
        seconds=time.perf_counter() - started,
    )


def consumed_partitions(config: ImportConfig) -> tuple[list[Partition], str | None]:
    """The partitions under ``--mark-consumed`` (before ``--consumed-before``, if given) that the imported
    model is taken to have seen, and the root their ledger keys are relative to; none without the flag.

    As a refresh would, it leaves out files still being written (no ``_SUCCESS`` yet where the input has
    markers, staged or in-progress names): the first refresh trains on them once they are complete.
    """
    if config.mark_consumed is None:
        return [], None
    fs, root = open_filesystem(config.mark_consumed)
    listing = list_input(fs, root)
    found = partitions_of(fs, listing)
    if config.consumed_before is None:
        chosen = found
    else:
        newer = {p.key for p in select(found, since=config.consumed_before)}
        chosen = [p for p in found if p.key not in newer]
    ready, waiting = hold_back(listing, chosen, Readiness(), time.time())
    for partition, reason in waiting:
        log.info("not marked as consumed, still being written (%s): %s", reason, partition.uri)
    log.info("marking %d of %d partitions under %s as consumed", len(ready), len(found), listing.uri)
    return ready, listing.uri


def manifest_fields(
    config: ImportConfig,
    version: str,
    source: adopt.Source,
    seeded: list[Partition],
) -> dict[str, Any]:
    origin = source.imported_from
    return {
        "version": version,
        "parent": None,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": source.kind,
        "training": origin["architecture"],
        "imported_from": origin,
        "import_notes": source.notes,
        "ledger_seeded": {
            "input": config.mark_consumed,
            "before": config.consumed_before,
            "partitions": len(seeded),
        },
        "partitions": [],
        "rejected": [],
        "documents": 0,
        "sentences": 0,
        "tokens": 0,
        "new_words": 0,
        "new_words_sample": [],
        "vocab_size": origin["words"],
    }


def _recorded(config: ImportConfig) -> dict[str, Any]:
    """The import's resolved flags (recorded as ``config.json``)."""
    return {"import": to_dict(config)}
