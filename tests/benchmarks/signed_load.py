"""What checking signatures adds to a reader's load: ``load_vectors`` with and without a trusted key.

    python -m tests.benchmarks.signed_load                     # 1M words x 100 dimensions
    python -m tests.benchmarks.signed_load --words 100000      # a quick look

A Word2Vec of ``--words`` x ``--dims`` (gensim's random initial vectors) is imported, signed, into a local
store. Then, alternating so both see the same page cache:

* **sign / verify** of the version's manifest and of a refresh-sized manifest (1,000 partitions named), and
  of the pointer: the only bytes a signature covers (the files are covered by their SHA-256 in the manifest);
* **pointer + manifest**: what a load reads before any file (``read_manifest(store, "latest")``), both ways;
* **load_vectors warm** (files from the cache, every SHA-256 checked again): without a trusted key, and with
  one (the pointer's and the manifest's signatures, the signature file read, the newest pointer remembered);
* **load_vectors cold** (empty cache: copy and verify every file), both ways.

Each row is the median of ``--repeats`` runs. The store is a local folder: on S3 a verified load also makes
one more small GET (the manifest's signature), a few milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.config import SigningConfig
from jobs.storage import open_store, signed, signing
from jobs.storage.publish import read_manifest
from jobs.storage.signed import parse_pointer
from jobs.vectors import load_vectors
from jobs.versions import main as versions_main
from tests.benchmarks.import_load import build

log = logging.getLogger(__name__)


def median_seconds(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.signed_load", description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("jobs").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="signed-load-") as tmp:
        root = Path(tmp)
        key = signing.generate(root / "key.pem")
        public = str(root / "key.pem.pub")
        path = build(root, a.words, a.dims)
        store = str(root / "store")
        flags = ["--signing-key", str(root / "key.pem"), "--trusted-key", public, "--seen-dir", str(root / "seen")]
        assert versions_main(["import", str(path), "--kind", "gensim", "--store", store, *flags]) == 0
        logging.getLogger("jobs").setLevel(logging.WARNING)  # the import turned its progress on
        version = json.loads((Path(store) / "CURRENT").read_bytes())["version"]
        manifest = (Path(store) / "versions" / version / "manifest.json").read_bytes()
        refresh_sized = json.dumps(
            {**json.loads(manifest), "partitions": [f"dt=2026-11-{d:02d}/part-{i:05d}.parquet" for d in range(1, 11)
                                                    for i in range(100)]}, indent=2).encode()  # fmt: skip
        pointer = (Path(store) / "CURRENT").read_bytes()
        trusted = signing.load_trusted_keys([public])
        rows: list[tuple[str, float]] = []
        for label, body in (("manifest", manifest), ("refresh-sized manifest", refresh_sized)):
            signature = key.sign(body)
            rows.append((f"sign {label} ({len(body):,} B)", median_seconds(lambda b=body: key.sign(b), 200)))
            rows.append(
                (
                    f"verify {label}",
                    median_seconds(lambda b=body, s=signature: trusted.verify(b, s, "m"), 200),
                )
            )
        fields = parse_pointer(pointer, "CURRENT")
        stamp = fields.signature
        assert stamp is not None
        check = fields.message
        rows.append(
            (f"verify pointer ({len(pointer)} B)", median_seconds(lambda: trusted.verify(check, stamp, "p"), 200))
        )

        # What a load does before any file: pointer → manifest, and with a trusted key their signatures, the
        # signature file read and the newest pointer remembered under a lock.
        for label, config in (("no trusted key", SigningConfig()), ("verified", SigningConfig(trusted_keys=(public,)))):
            opened = open_store(store, signed.load(config, root / "reader"))
            rows.append(
                (f"pointer + manifest read, {label}", median_seconds(lambda o=opened: read_manifest(o, "latest"), 200))
            )

        cache = root / "cache"
        load_vectors(store, cache_dir=cache, mmap="r", trusted_keys=[])  # fill the cache
        warm: dict[str, list[float]] = {"unsigned": [], "verified": []}
        for _ in range(a.repeats):
            for mode, keys in (("unsigned", []), ("verified", [public])):
                start = time.perf_counter()
                vectors, _ = load_vectors(store, cache_dir=cache, mmap="r", trusted_keys=keys)
                warm[mode].append(time.perf_counter() - start)
                del vectors
        cold: dict[str, list[float]] = {"unsigned": [], "verified": []}
        for _ in range(max(1, a.repeats // 2)):
            for mode, keys in (("unsigned", []), ("verified", [public])):
                for entry in [e for e in cache.iterdir() if e.is_dir() and e.name != "seen"]:
                    shutil.rmtree(entry)
                start = time.perf_counter()
                vectors, _ = load_vectors(store, cache_dir=cache, mmap="r", trusted_keys=keys)
                cold[mode].append(time.perf_counter() - start)
                del vectors

    print(f"\n{a.words:,} words x {a.dims} dims, medians\n")
    print("| step | time |\n| --- | --- |")
    for label, seconds in rows:
        print(f"| {label} | {seconds * 1e6:,.0f} µs |")
    for name, runs in (("warm", warm), ("cold", cold)):
        plain, verified = statistics.median(runs["unsigned"]), statistics.median(runs["verified"])
        print(f"| load_vectors {name}, no trusted key | {plain:.3f} s |")
        print(f"| load_vectors {name}, verified | {verified:.3f} s ({(verified - plain) * 1e3:+.1f} ms) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
