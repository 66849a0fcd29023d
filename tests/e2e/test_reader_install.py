"""The reader's install: ``pip install embedding-refresh`` with no extra, in a virtual environment this test
makes, reads a version from a local store and from S3 exactly as the full install does, without gensim, Ray
or cryptography, and still refuses a tampered file.

The project's wheel is built here from a copy of its sources (no isolated build environment: the test extra
brings setuptools), then
installed into a new ``venv`` by this interpreter's pip (``--python``), its dependencies from pip's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from gensim.models import FastText

from jobs.vectors import load_vectors
from jobs.versions import main as versions_main
from tests.support import REPO
from tests.support.s3server import DUMMY_ENV, MotoServer

READ = """
import contextlib, hashlib, importlib, io, json, sys
import numpy as np
from jobs.errors import ConfigError, IntegrityError
from jobs.versions import main
from jobs.vectors import load_vectors

def digest(vectors):
    return hashlib.sha256(np.ascontiguousarray(vectors.vectors).tobytes()).hexdigest()

found = {}
for name in ("ray", "gensim", "cryptography", "prometheus_client"):
    try:
        importlib.import_module(name)
        found[name] = True
    except ImportError:
        found[name] = False
store, s3, cache, keys = sys.argv[1:5]
with contextlib.redirect_stdout(io.StringIO()) as listed:
    code = main(["list", "--store", store])
local, version = load_vectors(store, cache_dir=cache + "/local", mmap="r")
remote, _ = load_vectors(s3, cache_dir=cache + "/s3")
out = {"jobs": __import__("jobs").__file__, "found": found, "version": version, "local": digest(local),
       "s3": digest(remote), "list": [code, listed.getvalue()], "oov": local["unseenword"].tolist(),
       "neighbours": local.most_similar("wab", topn=5)}
try:
    load_vectors(store, cache_dir=cache + "/signed", trusted_keys=[keys])
except ConfigError as exc:
    out["signing"] = str(exc)
with open(sys.argv[5], "r+b") as damaged:  # the store's own copy of the vectors: one byte changed
    damaged.seek(-1, 2)
    last = damaged.read(1)
    damaged.seek(-1, 2)
    damaged.write(bytes([last[0] ^ 0xFF]))
try:
    load_vectors(store, cache_dir=cache + "/fresh")
except IntegrityError as exc:
    out["tampered"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def reader_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment holding ``pip install embedding-refresh`` and nothing else."""
    root = tmp_path_factory.mktemp("reader")
    source = root / "source"  # a copy of what the wheel holds: the build writes beside its sources
    for part in ("jobs", "shards"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root, source])
    (wheel,) = root.glob("embedding_refresh-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", root / "venv"])
    python = root / "venv" / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--no-compile",
            "--only-binary",
            ":all:",
            wheel,
        ]
    )
    return python


def run(command: list[Any]) -> None:
    # Not the session's PYTHONPATH (the repository, for Ray's workers): through it pip would find the editable
    # install's metadata and take the project as already installed in the new environment.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_reader_install_loads_what_the_full_install_loads(
    reader_python: Path, moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FastText([["wab", "wac", "wad", "wae"]] * 50, vector_size=8, min_count=1, bucket=500, workers=1, seed=2)
    model.save(str(tmp_path / "pretrained.model"))
    store = str(tmp_path / "store")
    bucket = f"reader-{uuid.uuid4().hex[:12]}"
    env = {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_CONFIG_FILE": os.devnull}
    for name in [n for n in os.environ if n.startswith(("AWS_", "EMBEDDING_REFRESH_"))]:
        monkeypatch.delenv(name)
    for name, value in {**env, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=bucket)
    s3 = f"s3://{bucket}/models"
    for uri in (store, s3):
        assert versions_main(["import", str(tmp_path / "pretrained.model"), "--store", uri, "--kind", "gensim"]) == 0
    full, version = load_vectors(store, cache_dir=tmp_path / "full-cache")
    expected = hashlib.sha256(np.ascontiguousarray(full.vectors).tobytes()).hexdigest()
    (tmp_path / "trusted.pub").write_bytes(b"k" * 32)
    (stored,) = (tmp_path / "store" / "versions" / version / "model").glob("vectors.npy")

    done = subprocess.run(
        [
            str(reader_python),
            "-c",
            READ,
            store,
            s3,
            str(tmp_path / "cache"),
            str(tmp_path / "trusted.pub"),
            str(stored),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: the installed copy of jobs is imported
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert Path(got["jobs"]).is_relative_to(reader_python.parents[1])
    assert got["found"] == {"ray": False, "gensim": False, "cryptography": False, "prometheus_client": False}
    assert got["list"][0] == 0 and f"* {version}" in got["list"][1]  # jobs.versions runs on the reader's install
    assert (got["version"], got["local"], got["s3"]) == (version, expected, expected)
    assert np.allclose(got["oov"], model.wv["unseenword"], atol=1e-6)
    assert [w for w, _ in got["neighbours"]] == [w for w, _ in model.wv.most_similar("wab", topn=5)]
    assert "pip install 'embedding-refresh[signing]'" in got["signing"]
    assert "vectors.npy: SHA-256" in got["tampered"] and "differs from the manifest" in got["tampered"]
