"""Sample partitions made from real text that ships with gensim (its English Wikipedia excerpt).

    python -m jobs.samples --output data/sample --days 3

writes one Parquet partition per day, Hive-style (``dt=2026-11-22/part-00000.parquet``), each holding a
contiguous slice of the excerpt's articles, one document per paragraph. Later days hold articles the earlier
ones never saw, so a refresh over a new day meets words the current model does not know yet.
"""

from __future__ import annotations

import argparse
import bz2
import datetime as dt
import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from gensim.corpora.wikicorpus import extract_pages, filter_wiki
from gensim.test.utils import datapath

WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
FIRST_DAY = dt.date(2026, 11, 22)


@functools.cache
def articles() -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every article in gensim's Wikipedia excerpt, markup removed."""
    out = []
    with bz2.BZ2File(datapath(WIKI)) as handle:
        for title, text, _ in extract_pages(handle):
            paragraphs = [" ".join(p.split()) for p in filter_wiki(text).split("\n\n")]
            paragraphs = [p for p in paragraphs if len(p) > 20]
            if paragraphs:
                out.append((title, paragraphs))
    return out


def day_folder(day: int) -> str:
    return f"dt={FIRST_DAY + dt.timedelta(days=day)}"


def write_days(output: Path, days: range, total_days: int) -> list[Path]:
    """Write the partitions of ``days`` (0-based) out of ``total_days`` equal slices of the excerpt."""
    docs = articles()
    per_day = -(-len(docs) // total_days)
    written = []
    for day in days:
        chunk = docs[day * per_day : (day + 1) * per_day]
        folder = output / day_folder(day)
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "title": [title for title, paragraphs in chunk for _ in paragraphs],
                "text": [p for _, paragraphs in chunk for p in paragraphs],
            }
        )
        path = folder / "part-00000.parquet"
        pq.write_table(table, path, row_group_size=2_000)
        (folder / "_SUCCESS").touch()
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m jobs.samples", description=__doc__.splitlines()[0])
    p.add_argument("--output", default="data/sample", type=Path)
    p.add_argument("--days", type=int, default=3, help="how many daily partitions to write")
    p.add_argument("--of", type=int, default=3, help="slices the excerpt is cut into")
    a = p.parse_args(argv)
    for path in write_days(a.output, range(a.days), a.of):
        print(path)


if __name__ == "__main__":
    main()
