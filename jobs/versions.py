"""Inspect and manage the versions in a model store.

    python -m jobs.versions list   --store models
    python -m jobs.versions show   latest --store models
    python -m jobs.versions export latest --store models --output vectors.txt [--format word2vec-binary]
    python -m jobs.versions import pretrained.model --store models [--mark-consumed data/ --consumed-before DATE]
    python -m jobs.versions promote 20261124T020000Z-ab12cd --store models     # rollback or roll forward
    python -m jobs.versions gc --keep 5 --store models      # also incomplete versions older than a day
    python -m jobs.versions gc --keep 5 --keep-runs 100 --store models   # and all but the 100 newest run records
    python -m jobs.versions convert 20261124T020000Z-ab12cd --store models --allow-pickle   # the old format, once
    python -m jobs.versions runs --store models [--last 20] [--json]     # recent runs, failed ones too
    python -m jobs.versions diff OLDER latest --store models --output diff.parquet   # words added, moved, removed
    python -m jobs.versions keygen --out signing.pem        # an Ed25519 key pair: signing.pem, signing.pem.pub
    python -m jobs.versions sign latest --store models --signing-key signing.pem   # (re-)sign a version
    python -m jobs.versions exporter --store models [--store s3://…] --port 9108   # freshness for Prometheus

Readers resolve pointer → manifest → files; ``export`` reads through :func:`jobs.vectors.load_vectors`, which
verifies every checksum before anything is read, and reads the model as plain data (:mod:`jobs.format.files`):
``list``, ``show`` and ``export`` to word2vec or Parquet need neither gensim nor Ray (the reader's install;
``keyedvectors``, ``gensim``, ``convert`` and ``import`` need gensim, and say so). A version in the previous
format (gensim's ``save()``, a pickle) is refused unless ``--allow-pickle`` says that the user trusts every writer
of the store; ``convert`` rewrites it once as a new version in the pickle-free format. ``import`` makes a model
trained elsewhere the first version of a lineage (:mod:`jobs.importer`); a gensim ``save()`` file is unpickled
only when the user says so (``--kind gensim`` or ``--allow-pickle``), so import only files you trust. ``promote``
and ``gc`` live in :mod:`jobs.retention`, which makes them safe against each other. ``exporter`` serves the
stores' freshness and last outcomes to Prometheus (:mod:`jobs.exporter`; the ``[exporter]`` extra). Options may
come before or after the subcommand. ``python -m jobs.models``, the former name, runs the same :func:`main`
(:mod:`jobs.models`), so schedules written before keep working.

With ``--signing-key`` (or ``$EMBEDDING_REFRESH_SIGNING_KEY``) what a command writes is signed; with
``--trusted-key`` (or ``$EMBEDDING_REFRESH_TRUSTED_KEYS``) what it reads must be (docs/signing.md). ``sign``
signs versions written before, or again with a new key; ``promote --rollback`` replaces a pointer that was
rolled back or forged.

Exit status, as the refresh's (:mod:`jobs.errors`): 0 done; 2 a usage error; 3 refused (a missing version, a
checksum mismatch or a bad signature, a pickled model, a file that cannot be imported); 75 the store could not
be read or written (a rerun is safe); 1 an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs import changes, exporter, runs
from jobs.config import ImportConfig, add_import_arguments, add_signing_arguments, import_config, signing_config
from jobs.errors import ConfigError, RefreshError, SignatureError, exit_status
from jobs.format.export import EXPORT_FORMATS
from jobs.format.export import export as export_vectors
from jobs.keyed import needs_gensim
from jobs.lineage import rejections
from jobs.report import as_json
from jobs.retention import INCOMPLETE_GRACE_HOURS, MIN_GRACE_HOURS, gc, promote
from jobs.storage import Store, open_store, signed, signing
from jobs.storage.manifest import partitions_consumed
from jobs.storage.publish import (
    MANIFEST,
    MODEL_DIR,
    Draft,
    current,
    fetch_verified,
    load_manifest,
    model_files,
    move_pointer,
    new_version,
    resolve,
)
from jobs.vectors import cache_root, load_vectors

ALLOW_PICKLE_HELP = (
    "read a version in the previous format (gensim's save(), a pickle): unpickling runs any code that anyone "
    "who could write to the store put there; only for stores whose every writer you trust"
)

log = logging.getLogger("jobs.versions")
LEGACY_VECTORS = "vectors.bin"  # the word2vec-format copy that versions in the previous format carried


def list_versions(store: Store) -> str:
    """A table of the versions, the current one starred. With trusted keys, a version (or the pointer) that
    fails its check is listed as refused, with the reason, instead of failing the whole listing."""
    refused = []
    try:
        pointer = current(store)
    except SignatureError as exc:
        pointer, refused = None, [f"pointer refused: {exc}"]
    now = pointer.version if pointer else None
    rows = [f"{'':2}{'version':<26}{'parent':<26}{'partitions':>11}{'tokens':>14}{'vocab':>10}"]
    for version in store.list_versions():
        mark = "* " if version == now else "  "
        try:
            m = load_manifest(store, version)
        except SignatureError as exc:
            rows.append(f"{mark}{version:<26}refused: {exc}")
            continue
        rows.append(
            f"{mark}{version:<26}{m.parent or '-':<26}{m.partitions_consumed:>11}{m.tokens:>14,}{m.vocab_size:>10,}"
        )
    if len(rows) == 1 and not refused:
        return f"no versions in {store.uri}"
    return "\n".join(rows + refused)


def consumed(manifest: Mapping[str, Any]) -> int:
    """How many partitions a version consumed (its manifest names at most the first thousand)."""
    return partitions_consumed(manifest)


def show(store: Store, version: str) -> str:
    """The version's manifest as JSON, with whether it is current, who signed it and what runs building on it
    found bad since."""
    manifest = load_manifest(store, version)
    pointer = current(store)
    shown: dict[str, Any] = manifest.to_dict()
    shown["current"] = pointer is not None and pointer.version == manifest.version
    shown["signed_by"] = signed.signer(store, manifest.version)  # a key id; checked when keys are trusted
    found_since = rejections.pending(store, manifest.version)
    if found_since:  # found bad by runs building on this version that published nothing
        shown["rejections_pending"] = [asdict(r) for r in found_since]
    return as_json(shown)


def export(
    store: Store, version: str, output: Path, fmt: str, cache_dir: Path | None = None, allow_pickle: bool = False
) -> str:
    """Write a version's vectors (word2vec text or binary, gensim's KeyedVectors file, Parquet) or, as
    ``gensim``, its whole trainable model (gensim's ``save()``: a pickle). Raises PickledModelError for a
    version in the previous format unless ``allow_pickle``."""
    manifest = load_manifest(store, version)
    name = manifest.version
    with tempfile.TemporaryDirectory(prefix="embedding-export-") as tmp:
        if fmt == "gensim" and not manifest.pickled:  # every file of the model, verified, then loaded trainable
            gmodel = needs_gensim("export --format gensim", "jobs.training.model")
            folder = fetch_verified(store, name, Path(tmp), model_files(manifest))
            model = gmodel.load(folder / MODEL_DIR)
            gmodel.export_model(model, output)
            return f"exported {name} ({len(model.wv):,} words) to {output} as a trainable gensim model (a pickle)"
        if manifest.pickled:
            folder = fetch_verified(store, name, Path(tmp), model_files(manifest, allow_pickle))
            serialize = needs_gensim(f"reading {name}, a gensim pickle")
            vectors = serialize.unpickle_legacy(folder / MODEL_DIR, manifest.model).wv
        else:
            vectors, _ = load_vectors(store.uri, name, mmap="r", cache_dir=cache_dir or tmp)
        export_vectors(vectors, output, fmt)
        words = len(vectors)
        del vectors  # its arrays map files in the temporary cache
    return f"exported {name} ({words:,} words) to {output} as {fmt}"


def import_model(config: ImportConfig) -> str:
    importer = needs_gensim("import", "jobs.importer")  # the rest of this command line works without gensim
    done = importer.run(config)
    lines = [
        f"imported {config.path} as {done.version} into {done.store} ({done.kind}, {done.words:,} words x "
        f"{done.vector_size}); it is the current version (was {done.replaced or 'none'})",
    ]
    if config.mark_consumed:
        lines.append(f"  {done.seeded_partitions:,} partitions under {config.mark_consumed} marked as consumed")
    lines += [f"  note: {note}" for note in done.notes]
    return "\n".join(lines)


def convert(store: Store, version: str, allow_pickle: bool) -> str:
    """Rewrite a version in the previous (pickled) format as a new version in the pickle-free format, with the
    same lineage state (ledger, remembered counts, reservoir, config, report). The new version becomes current
    if the old one was. Versions are immutable, so the old one stays until ``gc`` removes it."""
    if not allow_pickle:
        raise ConfigError(
            f"convert unpickles the model of {version}; pass --allow-pickle to confirm: {ALLOW_PICKLE_HELP}"
        )
    manifest = load_manifest(store, version)
    source = manifest.version
    if not manifest.pickled:
        return f"{source} is already in the pickle-free format; nothing to do"
    serialize, gmodel = needs_gensim("convert"), needs_gensim("convert", "jobs.training.model")

    pointer = current(store)
    promote = pointer is not None and pointer.version == source
    with (
        tempfile.TemporaryDirectory(prefix="embedding-convert-") as tmp,
        Draft(store, new_version()) as draft,
    ):
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        fetch_verified(store, source, old)
        model = serialize.unpickle_legacy(old / MODEL_DIR, manifest.model)
        gmodel.save(model, new)
        del model
        for name in manifest.files:
            if not name.startswith(f"{MODEL_DIR}/") and name not in (LEGACY_VECTORS, MANIFEST):
                (new / name).parent.mkdir(parents=True, exist_ok=True)
                (old / name).replace(new / name)
        draft.upload(new)
        fields = {k: v for k, v in manifest.to_dict().items() if k not in ("format", "version", "files")}
        draft.commit({**fields, "parent": source, "converted_from": source}, pointer, promote=promote)
    if promote:
        return f"converted {source} to {draft.version}, now the current version"
    return f"converted {source} to {draft.version} (not promoted: {source} was not the current version)"


def sign(store: Store, versions: list[str]) -> str:
    """Sign the manifests of ``versions`` with the store's signing key (each checked first against the trusted
    keys, if any), and the pointer too when it names one of them: for a store that starts signing, and to move
    to a new key (docs/signing.md)."""
    key = store.signing.key
    if key is None:
        raise ConfigError("sign needs a signing key: --signing-key FILE (or $EMBEDDING_REFRESH_SIGNING_KEY)")
    pointer = current(store)
    names = [resolve(store, v) for v in versions]
    for name in names:
        signed.resign_manifest(store, name)
    lines = [f"signed {', '.join(names)} with key {key.key_id}"]
    if pointer is not None and pointer.version in names:
        move_pointer(store, pointer.version, pointer)
        lines.append(f"signed the pointer ({pointer.version}) with key {key.key_id}")
    return "\n".join(lines)


def keygen(out: Path) -> str:
    """Write a new Ed25519 key pair: the private key to ``out`` (mode 0600), the public key to ``out.pub``."""
    key = signing.generate(out)
    return (
        f"private key: {out} (mode 0600; keep it on the trainer's host, out of the store and out of images)\n"
        f"public key:  {out}.pub (give it to readers: --trusted-key or $EMBEDDING_REFRESH_TRUSTED_KEYS)\n"
        f"key id:      {key.key_id}"
    )


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--store", required=True, help="a folder or s3://bucket/prefix")
    add_signing_arguments(common)
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m jobs.versions", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="versions, the current one starred")
    s = sub.add_parser("show", parents=[common], help="a version's manifest")
    s.add_argument("version", help="a version or 'latest'")
    e = sub.add_parser("export", parents=[common], help="a version's KeyedVectors, as word2vec or gensim files")
    e.add_argument("version", help="a version or 'latest'")
    e.add_argument("--output", required=True, type=Path)
    e.add_argument(
        "--format",
        dest="fmt",
        choices=EXPORT_FORMATS,
        default="word2vec-text",
        help="word2vec-text, word2vec-binary, keyedvectors (gensim's KeyedVectors.load), parquet (word, count, "
        "vector), or gensim: the whole trainable model as gensim's save() file, which is a pickle (load it only "
        "from a source you trust)",
    )
    e.add_argument("--binary", dest="fmt", action="store_const", const="word2vec-binary", help="word2vec binary")
    e.add_argument("--cache-dir", type=Path, help="keep the downloaded version here for later loads")
    e.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    c = sub.add_parser("convert", parents=[common], help="rewrite a version of the previous format without pickle")
    c.add_argument("version", help="a version or 'latest'")
    c.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    i = sub.add_parser(
        "import",
        parents=[common],
        help="make a model trained elsewhere the first version of a lineage",
        description="Import a gensim save() file, a Facebook fastText .bin (or .bin.gz) or (with --adopt-vectors) "
        "word2vec vectors as the first version of a lineage. A gensim save() file is a pickle: it is UNPICKLED, as "
        "gensim's load() does, only with --kind gensim or --allow-pickle, never because of what the file holds; "
        "import only files you trust.",
    )
    add_import_arguments(i)
    d = sub.add_parser(
        "diff", parents=[common], help="the words added, removed and moved from one version to a later one"
    )
    d.add_argument("older", help="a version (or 'latest')")
    d.add_argument("newer", help="a later version of the same lineage (or 'latest')")
    d.add_argument("--output", required=True, type=Path, help="the Parquet file to write")
    d.add_argument(
        "--threshold",
        type=float,
        default=changes.DEFAULT_THRESHOLD,
        help=f"cosine distance beyond which a word counts as moved (default {changes.DEFAULT_THRESHOLD})",
    )
    pr = sub.add_parser("promote", parents=[common], help="make a version current (rollback)")
    pr.add_argument("version")
    pr.add_argument(
        "--rollback",
        dest="allow_rollback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="replace a pointer that went back below one this host has seen, or that fails its signature check",
    )
    sg = sub.add_parser("sign", parents=[common], help="sign versions' manifests (and the pointer) with --signing-key")
    sg.add_argument("versions", nargs="+", metavar="version", help="a version or 'latest'")
    k = sub.add_parser("keygen", help="write a new Ed25519 signing key and its public key")
    k.add_argument("--out", required=True, type=Path, help="the private key's file; the public key goes to OUT.pub")
    g = sub.add_parser("gc", parents=[common], help="remove old versions (never the current one or its parent)")
    g.add_argument("--keep", type=int, default=5)
    g.add_argument(
        "--keep-runs",
        type=int,
        metavar="N",
        help="also remove all but the N newest run records (runs/); default: leave them",
    )
    g.add_argument(
        "--incomplete-grace",
        type=float,
        default=INCOMPLETE_GRACE_HOURS,
        metavar="HOURS",
        help="remove versions without a manifest whose newest file is older than this (a run may still be "
        f"writing a younger one; default {INCOMPLETE_GRACE_HOURS:g}, at least {MIN_GRACE_HOURS:g}: the longest run)",
    )
    g.add_argument(
        "--allow-short-grace",
        action="store_true",
        help=f"accept an --incomplete-grace under {MIN_GRACE_HOURS:g} h: only when no refresh is running (gc "
        "would remove the version it is writing and the parent it builds on)",
    )
    r = sub.add_parser("runs", parents=[common], help="the recent refresh runs, failed ones included")
    r.add_argument("--last", type=int, default=20, help="how many, newest first")
    r.add_argument("--json", action="store_true", help="one JSON record per line")
    exporter.add_arguments(
        sub.add_parser(
            "exporter",
            help="serve the stores' freshness and last run outcomes to Prometheus",
            description=exporter.__doc__.splitlines()[0] if exporter.__doc__ else None,
        )
    )
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    a = parser().parse_args(argv)
    if a.command == "import":
        logging.getLogger("jobs").setLevel(logging.INFO)  # progress of a long import
    try:
        if a.command == "keygen":
            print(keygen(a.out))
            return 0
        if a.command == "exporter":
            exporter.serve_forever(exporter.options(a))
            return 0
        store = open_store(a.store, signed.load(signing_config(a, os.environ), cache_root()))
        if a.command == "list":
            out = list_versions(store)
        elif a.command == "show":
            out = show(store, a.version)
        elif a.command == "export":
            out = export(store, a.version, a.output, a.fmt, a.cache_dir, a.allow_pickle)
        elif a.command == "import":
            out = import_model(import_config(a))
        elif a.command == "convert":
            out = convert(store, a.version, a.allow_pickle)
        elif a.command == "diff":
            about = changes.between(store, a.older, a.newer, a.output, a.threshold)
            out = (
                f"{about['from']} -> {about['to']}: {about['added']:,} added, {about['moved']:,} moved "
                f"(cosine distance > {about['threshold']:g}), {about['removed']:,} removed; written to {a.output}"
            )
        elif a.command == "promote":
            out = promote(store, a.version)
        elif a.command == "sign":
            out = sign(store, a.versions)
        elif a.command == "runs":
            recent = runs.recent(store, a.last)
            out = "\n".join(json.dumps(r, sort_keys=True) for r in recent) if a.json else runs.table(recent)
        else:
            # run records first, so they are pruned even where collecting versions fails
            pruned = runs.prune(store, a.keep_runs) if a.keep_runs is not None else None
            out = gc(store, a.keep, a.incomplete_grace, allow_short_grace=a.allow_short_grace)
            if pruned is not None:
                out += f"; removed {len(pruned)} run record(s), kept the {a.keep_runs} newest"
    except RefreshError as exc:
        log.error("%s", exc)
        return exit_status(exc)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
