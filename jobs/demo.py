"""The embedded default, end to end: sample partitions, a first model, new data, an update, the result.

    python -m jobs.demo --workdir demo

1. writes two days of sample partitions from gensim's Wikipedia excerpt (:mod:`jobs.samples`);
2. runs a refresh that trains the first model into ``demo/models``;
3. lands a third day of partitions;
4. runs a refresh that updates the model with only the new day;
5. lists the versions and shows the nearest neighbours of words that only the new day contains.

Ray is started in this process (no cluster needed) and the store is a local folder.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import ray

from jobs import report, samples
from jobs.config import from_args
from jobs.refresh import run
from jobs.storage import open_store
from jobs.storage.publish import fetch_verified, load_manifest, model_files
from jobs.training import model as gmodel
from jobs.versions import list_versions

TRAINING = ["--min-count", "3", "--epochs", "10", "--vector-size", "64", "--workers", "2"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m jobs.demo", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("demo"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    logging.getLogger("jobs.refresh").setLevel(logging.WARNING)  # the summaries below say it more briefly
    data, store_dir = a.workdir / "data", a.workdir / "models"
    shutil.rmtree(a.workdir, ignore_errors=True)
    args = ["--input", str(data), "--store", str(store_dir), *TRAINING]

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
    try:
        print("\n== 1. two days of sample partitions")
        samples.write_days(data, range(0, 2), total_days=3)
        print("\n== 2. first refresh: a new model")
        print(report.human(run(from_args(args))))
        print("\n== 3. a new day lands")
        samples.write_days(data, range(2, 3), total_days=3)
        print("\n== 4. second refresh: update with the new day only")
        second = run(from_args(args))
        print(report.human(second))
    finally:
        ray.shutdown()

    store = open_store(str(store_dir))
    print("\n== 5. versions in", store.uri)
    print(list_versions(store))
    manifest = load_manifest(store, "latest")
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_verified(store, "latest", Path(tmp), model_files(manifest))
        model = gmodel.load(folder / gmodel.MODEL_DIR)
    print("\nnearest neighbours of words that only the new day contains:")
    for word in manifest.new_words_sample[:8]:
        print(f"  {word:<16} " + ", ".join(f"{w} ({s:.2f})" for w, s in gmodel.neighbours(model, word, 5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
