"""Refresh a word-embedding model from new partitions and publish it as a new version.

    python -m jobs.refresh --input data/sample --store models            # local Ray, local folders
    python -m jobs.refresh --input s3://corpus/events --store s3://models/w2v --workers 16 --json

The runbook, in order (each step is one small module):

1. resolve the config (:mod:`jobs.config`) and open the store (:mod:`jobs.store`); read the pointer once;
2. discover partitions (:mod:`shards.partitions`) and keep those the lineage has not consumed (:mod:`jobs.ledger`);
3. tokenize them in parallel on Ray workers and stream them to the training actor (:mod:`jobs.cluster`);
4. update the vocabulary, train, save and upload the version's files (:mod:`jobs.trainer`, :mod:`jobs.model`);
5. commit: manifest, then one conditional write of the pointer (:mod:`jobs.publish`);
6. report (:mod:`jobs.report`).

Exit status: 0 when a version was published or there was nothing new; 1 on any failure, with a message naming
what failed and what to do, so ``ray job submit`` reports FAILED.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

from jobs import cluster, ledger, report
from jobs.config import RefreshConfig, from_args, to_dict
from jobs.errors import BadPartitionsError, RefreshError, TrainingError
from jobs.publish import read_manifest, version_key, write_manifest
from jobs.store import Store, open_store
from shards.partitions import discover, open_filesystem

log = logging.getLogger("jobs.refresh")


@dataclass(frozen=True)
class Hooks:
    """Seams for tests: gensim callbacks run inside training (e.g. one that raises mid-training)."""

    training_callbacks: tuple[Any, ...] = ()


def new_version() -> str:
    """A sortable, unique version name: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def run(config: RefreshConfig, hooks: Hooks = Hooks()) -> report.Summary:
    """Run one refresh. Raises RefreshError (or a subclass) on failure; the store is then unchanged."""
    started = time.perf_counter()

    # 1. Config and store. The pointer read here is the one the final conditional write must still find.
    store = open_store(config.store)
    pointer = store.read_pointer()
    parent = pointer.version if pointer else None
    parent_manifest = read_manifest(store, parent) if parent else None
    log.info("store %s: current version %s", store.uri, parent or "none (first model)")

    # 2. Discover partitions and keep the new ones.
    fs, root = open_filesystem(config.input)
    found = discover(fs, root, forced_format=config.input_format, glob=config.glob)
    seen = ledger.read(store, parent)
    plan = ledger.select(found, seen)
    todo = plan.new[: config.max_partitions] if config.max_partitions else plan.new
    for partition in plan.rewritten:
        log.warning("partition rewritten since it was consumed (not retrained): %s", partition.uri)
    log.info("%d partitions found, %d already consumed, %d new", len(found), plan.already, len(todo))
    if not todo:
        return report.Summary(
            version=None, parent=parent, published=False, store=store.uri, seconds=time.perf_counter() - started,
            message=f"no new partitions under {config.input} ({len(found)} found, all consumed)",
            rewritten=[p.uri for p in plan.rewritten],
        )

    version = new_version()
    with cluster.connected(config.ray_address):
        # 3. Tokenize on Ray workers, streaming into the training actor.
        with cluster.trainer_actor(config) as trainer:
            ingest = cluster.stream(config, fs, todo, trainer)
            if ingest.rejected and (not config.skip_bad_partitions or not ingest.consumed):
                raise BadPartitionsError(ingest.rejected)

            # 4. Vocabulary, training, save, upload (all on the trainer's node).
            extra = {
                ledger.LEDGER: ledger.extend(seen, ingest.consumed, version),
                "config.json": json.dumps(to_dict(config), indent=2, sort_keys=True).encode(),
            }
            event = {"partitions": len(ingest.consumed), "tokens": ingest.tokens}
            try:
                candidate = cluster.result(trainer.finish.remote(
                    store, parent, version, config.training, extra, event, hooks.training_callbacks))
            except TrainingError:
                _discard(store, version)
                raise

    # 5. Commit: the manifest, then the pointer (conditional on what step 1 read).
    fields = {
        "parent": parent,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": candidate.model_kind,
        "training": to_dict(config)["training"],
        "tokenizer": to_dict(config)["tokenizer"],
        "partitions": [{"uri": p.uri, "size": p.size, "mtime_ns": p.mtime_ns} for p in ingest.consumed],
        "rejected": [{"uri": e.uri, "cause": e.cause} for e in ingest.rejected],
        "documents": ingest.documents,
        "sentences": ingest.sentences,
        "tokens": ingest.tokens,
        "new_words": len(candidate.new_words),
        "new_words_sample": candidate.new_words[:100],
        "vocab_size": candidate.vocab_size,
        "timings": {"tokenize": round(ingest.seconds, 3), **{k: round(v, 3) for k, v in candidate.timings.items()}},
        "files": candidate.files,
        "version": version,
    }
    write_manifest(store, version, fields)
    store.swap_pointer(version, pointer)

    # 6. Report.
    return report.Summary(
        version=version, parent=parent, published=True, store=store.uri, partitions=len(ingest.consumed),
        documents=ingest.documents, sentences=ingest.sentences, tokens=ingest.tokens,
        new_words=len(candidate.new_words), vocab_size=candidate.vocab_size,
        seconds=time.perf_counter() - started,
        timings={"tokenize": ingest.seconds, **candidate.timings},
        rejected=fields["rejected"], rewritten=[p.uri for p in plan.rewritten], neighbours=candidate.neighbours,
    )


def _discard(store: Store, version: str) -> None:
    """Remove what a failed run uploaded before its manifest: readers never saw it."""
    try:
        store.get_bytes(version_key(version, "manifest.json"))
    except RefreshError:
        store.delete_version(version)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    try:
        config = from_args(argv)
        summary = run(config)
    except RefreshError as exc:
        log.error("refresh failed: %s", exc)
        return 1
    print(report.human(summary))
    if config.json:
        print(report.json_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
