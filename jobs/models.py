"""Inspect and manage the versions in a model store.

    python -m jobs.models list   --store models
    python -m jobs.models show   latest --store models
    python -m jobs.models export latest --store models --output vectors.txt [--binary]
    python -m jobs.models promote 20261124T020000Z-ab12cd --store models     # rollback or roll forward
    python -m jobs.models gc --keep 5 --store models

Readers resolve pointer → manifest → files; ``export`` verifies every checksum before gensim loads anything.
Options may come before or after the subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from jobs.errors import ConfigError, RefreshError, VersionNotFound
from jobs.report import as_json
from jobs.storage import Store, open_store
from jobs.storage.publish import fetch_verified, model_files, read_manifest, resolve
from jobs.training import model as gmodel

log = logging.getLogger("jobs.models")


def list_versions(store: Store) -> str:
    pointer = store.read_pointer()
    current = pointer.version if pointer else None
    rows = [f"{'':2}{'version':<26}{'parent':<26}{'partitions':>11}{'tokens':>14}{'vocab':>10}"]
    for version in store.list_versions():
        m = read_manifest(store, version)
        mark = "* " if version == current else "  "
        rows.append(
            f"{mark}{version:<26}{m.get('parent') or '-':<26}{len(m.get('partitions', [])):>11}"
            f"{m.get('tokens', 0):>14,}{m.get('vocab_size', 0):>10,}"
        )
    if len(rows) == 1:
        return f"no versions in {store.uri}"
    return "\n".join(rows)


def show(store: Store, version: str) -> str:
    manifest = read_manifest(store, version)
    pointer = store.read_pointer()
    manifest["current"] = pointer is not None and pointer.version == manifest["version"]
    return as_json(manifest)


def export(store: Store, version: str, output: Path, binary: bool) -> str:
    manifest = read_manifest(store, version)
    with tempfile.TemporaryDirectory(prefix="embedding-export-") as tmp:
        folder = fetch_verified(store, manifest["version"], Path(tmp), model_files(manifest))
        model = gmodel.load(folder / gmodel.MODEL_FILE, manifest["model"])
        gmodel.export(model, output, binary)
    return f"exported {manifest['version']} ({len(model.wv):,} words) to {output}"


def promote(store: Store, version: str) -> str:
    target = read_manifest(store, version)["version"]  # only a complete version can become current
    pointer = store.read_pointer()
    store.swap_pointer(target, pointer)
    return f"current version: {target} (was {pointer.version if pointer else 'none'})"


def gc(store: Store, keep: int) -> str:
    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    current = resolve(store, "latest")
    protected = {current, read_manifest(store, current).get("parent")}
    versions = store.list_versions()
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protected]
    for version in doomed:
        store.delete_version(version)
    return f"removed {len(doomed)} version(s); kept {len(versions) - len(doomed)}"


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--store", required=True, help="a folder or s3://bucket/prefix")
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m jobs.models", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="versions, the current one starred")
    s = sub.add_parser("show", parents=[common], help="a version's manifest")
    s.add_argument("version", help="a version or 'latest'")
    e = sub.add_parser("export", parents=[common], help="KeyedVectors in word2vec format")
    e.add_argument("version", help="a version or 'latest'")
    e.add_argument("--output", required=True, type=Path)
    e.add_argument("--binary", action="store_true")
    pr = sub.add_parser("promote", parents=[common], help="make a version current (rollback)")
    pr.add_argument("version")
    g = sub.add_parser("gc", parents=[common], help="remove old versions (never the current one or its parent)")
    g.add_argument("--keep", type=int, default=5)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    a = parser().parse_args(argv)
    try:
        store = open_store(a.store)
        if a.command == "list":
            out = list_versions(store)
        elif a.command == "show":
            out = show(store, a.version)
        elif a.command == "export":
            out = export(store, a.version, a.output, a.binary)
        elif a.command == "promote":
            out = promote(store, a.version)
        else:
            out = gc(store, a.keep)
    except VersionNotFound as exc:
        log.error("%s", exc)
        return 2
    except RefreshError as exc:
        log.error("%s", exc)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
