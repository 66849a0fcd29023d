"""Benchmark: what a newline-free gzip bomb costs the reader, with this code or another checkout's.

    python -m tests.benchmarks.hostile                                # 0.3 MB of gzip, 300 MiB of one letter
    python -m tests.benchmarks.hostile --code ../old-checkout         # the same file through older code

Makes (or finds cached) a ``.txt.gz`` of ``--mib`` MiB of one letter without a newline, then reads it with
``shards.readers.read_texts`` in a fresh process per setting, importing ``shards`` from ``--code``: with the
default limits, with the ratio cap off, and with a smaller ``--max-document-bytes`` (code without
:mod:`shards.limits` is read once, as it reads). Prints each read's growth of the peak resident memory over
the process's memory before the read (``ru_maxrss``), its time and how it ended.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]

READ = """
import json, resource, sys, time
from shards.partitions import discover, open_filesystem
from shards.readers import read_texts
path, limits = sys.argv[1], json.loads(sys.argv[2])
fs, root = open_filesystem(path.rsplit("/", 1)[0])
[partition] = [p for p in discover(fs, root) if p.path == path]
kwargs = {}
if limits is not None:
    from shards.limits import Limits
    kwargs["limits"] = Limits(**limits)
before, started, outcome = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter(), "read whole"
try:
    for texts in read_texts(fs, partition, **kwargs):
        pass
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc.cause if hasattr(exc, 'cause') else exc}"
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown": (after - before) << 10, "seconds": seconds, "outcome": outcome}))
"""


def bomb(path: Path, mib: int) -> Path:
    """``mib`` MiB of one letter, no newline, as concatenated gzip members (cached)."""
    if not path.exists():
        path.write_bytes(gzip.compress(b"a" * MiB, 9) * mib)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=300, help="MiB of text in the bomb")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose shards package reads it")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "hostile-bench")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = bomb(args.dir / f"one-line-{args.mib}.txt.gz", args.mib)
    bounded = (args.code / "shards" / "limits.py").exists()
    settings = {
        "defaults": {},
        "ratio off": {"max_decompression_ratio": 0},
        "8 MiB documents, ratio off": {"max_document_bytes": 8 * MiB, "max_decompression_ratio": 0},
    }
    print(f"{path.stat().st_size:,} bytes of gzip, {args.mib} MiB of text, read by {args.code.resolve()}")
    for name, limits in settings.items() if bounded else {"as it reads": None}.items():
        done = subprocess.run(
            [sys.executable, "-c", READ, str(path), json.dumps(limits)],
            cwd=args.code,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:>28}: +{result['grown'] / MiB:,.0f} MiB peak, {result['seconds']:.1f} s, {result['outcome']}")


if __name__ == "__main__":
    main()
