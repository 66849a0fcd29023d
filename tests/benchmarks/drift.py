"""How good are incremental updates? The job's refreshes against plain gensim updates and a full retrain.

    python -m tests.benchmarks.drift                 # ~480k tokens over 4 days; 2 minutes on 2 cores
    python -m tests.benchmarks.drift --scale 0.5 --seed 2 --out .bench/drift-2.json
    python -m tests.benchmarks.drift --only none --variant "a=--alpha 0.01" --variant "r1=--replay-fraction 1"

The corpus has a known answer. ``clusters`` groups of member words each have their own context words; a
sentence picks one group and mixes its members (Zipf frequencies within the group), its context words and
words shared by every group. It is written as Parquet partitions over four days:

* day 0 is the base; on days 1-3 a few groups fall silent ("dormant": their words appear no more, the case
  where an update can only forget), the others go on;
* every later day adds NEW words to the active groups: frequent ones, and rare ones that appear
  ``rare_per_day`` times a day, below ``min_count`` in any one day but above it over two (the case the job's
  remembered vocabulary is for);
* some old words MOVE to another group on day 1 or day 2: from then on they appear only with that group's
  context words.

Every approach sees the same days in the same order (a first model on day 0, then updates with days 1, 2, 3)
with the same hyper-parameters (``Params``) and 2 training threads:

* the job, ``jobs.refresh.run`` on a local Ray, one variant per row: default options (``--vocab-policy
  remember``), ``--replay-fraction`` 0.5 and 1.0, ``--vocab-policy gensim``, and ``--variant`` rows whose
  update runs get extra flags (e.g. ``--alpha``); flags that shape the state a lineage keeps (replay,
  vocabulary policy) apply from day 0, so replay rows keep a reservoir from the start;
* plain gensim, as its documentation teaches: ``Word2Vec(day 0)``, then ``build_vocab(day, update=True)`` and
  ``train(day, total_examples=..., epochs=...)`` for each day, in one process;
* a full retrain with gensim on days 0..3 together: the quality reference.

On each final model: precision@k of nearest neighbours among the member words (the share of a word's ``k``
nearest members that belong to its true group at the end) for old words that never moved, for new words that
made it into the vocabulary (how many did is reported), and for moved words (true group: the new one). Time
is the total of the three update runs (the job: wall-clock around ``run()``, and the trainer's ``train()``
alone); for the full retrain, the final retrain, and the sum over days 1-3 if it were retrained every day.
The table is printed and written, with the per-day details (each job run's quality-gate checks among them),
as JSON to ``--out``.

Reading the numbers:

* the "retrain, another seed" row is the noise floor: two equally good models differ by a few percent in
  P@k and share only ~70% of their top-k neighbours (``~full``); differences smaller than that are noise;
* the full retrain weighs all history equally, so a word moved on day 2 still sits mostly with its old group
  there: for moved words the incremental approaches "beat" the reference by following the latest data;
* a dormant group's vectors are frozen by an update while the active words move away from them, which makes
  dormant words each other's nearest neighbours (the ``dorm`` column rises above the retrain's): P@k cannot
  see that those vectors grow stale against the rest of the model;
* at ``--scale 1`` the corpus is small and each job run's fixed cost (Ray tasks, the training actor,
  fetching, verifying and saving versions) dominates its time; ``--scale 8`` shows the time ratios as the
  updates grow, while the frequent words' P@k saturates at 1.

It is not collected by pytest: it takes minutes and measures quality, not correctness.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Ray reads its authentication mode once, when it is imported: say it before anything imports Ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gensim.models import FastText, Word2Vec

from jobs.config import TrainingConfig

log = logging.getLogger("tests.benchmarks.drift")

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY = dt.date(2026, 1, 1)
DAYS = 4
LETTERS = "abcdefghijklmnopqrstuvwxyz"


# -- the corpus and its truth ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSpec:
    """The shape of the generated corpus. ``scale`` multiplies the sentence counts, nothing else."""

    seed: int = 0
    scale: float = 1.0
    clusters: int = 10
    members: int = 30  # old member words per group
    contexts: int = 12  # context words per group
    shared: int = 40  # words every group uses
    dormant: int = 3  # groups silent on days 1-3
    base_sentences: int = 16_000  # day 0
    day_sentences: int = 8_000  # each of days 1-3
    sentence_length: int = 12
    # A token is a member word, else one of its group's context words, else a shared word; with chance ``mix``
    # it is drawn as if from another group. Tuned so that the reference is good but not perfect.
    member_share: float = 0.15
    context_share: float = 0.15
    mix: float = 0.45
    zipf: float = 1.0
    frequent_new_per_day: int = 2  # per active group
    rare_new_per_day: int = 2  # per active group
    rare_per_day: int = 3  # occurrences a day of a rare new word: below min_count alone, above it over 2 days
    moved: int = 2  # per group, half on day 1 and half on day 2
    partitions_per_day: int = 4


@dataclass
class Word:
    """A member word: the group it belongs to at each point, and how it enters the corpus."""

    text: str
    kind: str  # old | frequent | rare
    cluster: int  # the group at day 0 (or when it appears)
    weight: float  # relative frequency among its group's members
    since: int = 0  # first day it appears
    moved_to: int | None = None
    moved_on: int | None = None

    def cluster_on(self, day: int) -> int:
        return self.moved_to if self.moved_to is not None and day >= (self.moved_on or 0) else self.cluster

    @property
    def truth(self) -> int:
        return self.cluster_on(DAYS)


@dataclass
class World:
    spec: CorpusSpec
    words: list[Word]
    contexts: list[list[str]]
    shared: list[str]
    dormant: set[int]

    def group(self, name: str) -> list[Word]:
        """Old words that never moved ("old"), new words ("new"), moved words ("moved")."""
        if name == "old":
            return [w for w in self.words if w.kind == "old" and w.moved_to is None]
        if name == "new":
            return [w for w in self.words if w.kind != "old"]
        return [w for w in self.words if w.moved_to is not None]


class _Names:
    """Unique pseudo-words of lowercase letters: the job's tokenizer keeps them as they are (it drops digits)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set[str]()

    def __call__(self, prefix: str) -> str:
        while True:
            text = prefix + "".join(self.rng.choice(LETTERS) for _ in range(4))
            if text not in self.used:
                self.used.add(text)
                return text


def make_world(spec: CorpusSpec) -> World:
    """Draw the groups, their words and the plan of new and moved words from ``spec.seed``."""
    rng = random.Random(spec.seed)
    name = _Names(rng)
    k = spec.clusters
    dormant = set(rng.sample(range(k), spec.dormant))
    active = [c for c in range(k) if c not in dormant]
    harmonic = [1 / (r + 1) ** spec.zipf for r in range(spec.members)]
    words = [Word(name("w"), "old", c, harmonic[r]) for c in range(k) for r in range(spec.members)]
    for c in range(k):
        # Mid-frequency words move (ranks 5..25): frequent enough to be learnt, not the group's anchors.
        candidates = [w for w in words if w.cluster == c and w.kind == "old"][5:25]
        for i, word in enumerate(rng.sample(candidates, spec.moved)):
            word.moved_to = rng.choice([a for a in active if a != c])
            word.moved_on = 1 + i % 2
    for day in range(1, DAYS):
        for c in active:
            for _ in range(spec.frequent_new_per_day):
                words.append(Word(name("n"), "frequent", c, harmonic[rng.randrange(8, spec.members)], since=day))
            for _ in range(spec.rare_new_per_day):
                words.append(Word(name("r"), "rare", c, 0.0, since=day))
    contexts = [[name("k") for _ in range(spec.contexts)] for _ in range(k)]
    shared = [name("s") for _ in range(spec.shared)]
    return World(spec, words, contexts, shared, dormant)


def day_texts(world: World, day: int) -> list[str]:
    """The documents (one sentence each) of ``day``."""
    spec = world.spec
    rng = random.Random(spec.seed * 1000 + day + 1)
    n = round((spec.base_sentences if day == 0 else spec.day_sentences) * spec.scale)
    groups = [c for c in range(spec.clusters) if day == 0 or c not in world.dormant]
    members: dict[int, tuple[list[str], list[float]]] = {}
    for c in groups:
        present = [w for w in world.words if w.kind != "rare" and w.since <= day and w.cluster_on(day) == c]
        members[c] = ([w.text for w in present], [w.weight for w in present])
    shared_weights = [1 / (r + 1) for r in range(len(world.shared))]
    sentences: list[list[str]] = []
    by_group: dict[int, list[int]] = {c: [] for c in groups}
    for i in range(n):
        c = rng.choice(groups)
        by_group[c].append(i)
        tokens = []
        for _ in range(spec.sentence_length):
            u, g = rng.random(), rng.choice(groups) if rng.random() < spec.mix else c
            if u < spec.member_share:
                tokens.append(rng.choices(*members[g])[0])
            elif u < spec.member_share + spec.context_share:
                tokens.append(rng.choice(world.contexts[g]))
            else:
                tokens.append(rng.choices(world.shared, shared_weights)[0])
        sentences.append(tokens)
    # Rare words: exactly rare_per_day occurrences a day, each in a different sentence of its group.
    for word in world.words:
        if word.kind == "rare" and word.since <= day:
            for i in rng.sample(by_group[word.cluster], spec.rare_per_day):
                sentences[i][rng.randrange(spec.sentence_length)] = word.text
    return [" ".join(s) for s in sentences]


def write_days(world: World, root: Path) -> list[list[list[str]]]:
    """Write every day as ``dt=YYYY-MM-DD/part-N.parquet``; return each day's tokenized sentences."""
    days = []
    for day in range(DAYS):
        texts = day_texts(world, day)
        folder = root / f"dt={FIRST_DAY + dt.timedelta(days=day)}"
        folder.mkdir(parents=True, exist_ok=True)
        step = -(-len(texts) // world.spec.partitions_per_day)
        for part, start in enumerate(range(0, len(texts), step)):
            pq.write_table(
                pa.table({"text": pa.array(texts[start : start + step], pa.string())}),
                folder / f"part-{part:05d}.parquet",
            )
        days.append([t.split() for t in texts])  # the words are lowercase letters: the job's tokenizer agrees
    return days


def day_glob(day: int) -> str:
    return f"dt={FIRST_DAY + dt.timedelta(days=day)}/*"


# -- the metric -----------------------------------------------------------------------------------------------


def member_vectors(vectors: Any, world: World) -> dict[str, np.ndarray]:
    """The unit vectors of the member words (old, moved and new) that the model knows."""
    found = {
        w.text: np.asarray(vectors[w.text], dtype=np.float64) for w in world.words if w.text in vectors.key_to_index
    }
    return {text: v / np.linalg.norm(v) for text, v in found.items()}


def nearest(vectors: dict[str, np.ndarray], k: int, among: set[str] | None = None) -> dict[str, list[str]]:
    """Each word's ``k`` nearest words by cosine, searched among ``among`` (default: all of ``vectors``)."""
    words = [w for w in vectors if among is None or w in among]
    matrix = np.stack([vectors[w] for w in words])
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1)[:, :k]
    return {w: [words[j] for j in row] for w, row in zip(words, order, strict=True)}


def precision_at_k(vectors: dict[str, np.ndarray], world: World, k: int) -> dict[str, dict[str, Any]]:
    """For each group of words, the mean share of a word's ``k`` nearest member words in its true group."""
    truth = {w.text: w.truth for w in world.words}
    score = {w: sum(truth[n] == truth[w] for n in ns) / k for w, ns in nearest(vectors, k).items()}

    def mean(words: list[Word]) -> dict[str, Any]:
        inside = [score[w.text] for w in words if w.text in score]
        return {"p": float(np.mean(inside)) if inside else float("nan"), "n": len(inside), "of": len(words)}

    old, new, moved = world.group("old"), world.group("new"), world.group("moved")
    return {
        "old": mean(old),
        "new": mean(new),
        "moved": mean(moved),
        "old_active": mean([w for w in old if w.cluster not in world.dormant]),
        "old_dormant": mean([w for w in old if w.cluster in world.dormant]),
        "new_frequent": mean([w for w in new if w.kind == "frequent"]),
        "new_rare": mean([w for w in new if w.kind == "rare"]),
        "moved_day1": mean([w for w in moved if w.moved_on == 1]),
        "moved_day2": mean([w for w in moved if w.moved_on == 2]),
    }


def overlap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], k: int) -> float:
    """Mean share of top-``k`` neighbours two models agree on, over the member words both know."""
    common = set(a) & set(b)
    na, nb = nearest(a, k, common), nearest(b, k, common)
    return float(np.mean([len(set(na[w]) & set(nb[w])) / k for w in common]))


# -- the approaches -------------------------------------------------------------------------------------------


DEFAULTS = TrainingConfig()  # the job's own defaults, shared by every approach below


@dataclass(frozen=True)
class Params:
    """Hyper-parameters shared by every approach."""

    vector_size: int = 64  # smaller than the job's default: the planted corpus is small
    window: int = DEFAULTS.window
    negative: int = DEFAULTS.negative
    epochs: int = DEFAULTS.epochs
    min_count: int = DEFAULTS.min_count
    sample: float = DEFAULTS.sample
    alpha: float = DEFAULTS.alpha
    min_alpha: float = DEFAULTS.min_alpha
    workers: int = 2
    seed: int = DEFAULTS.seed
    model: str = DEFAULTS.model  # word2vec | fasttext
    sg: bool = DEFAULTS.sg
    bucket: int = 100_000  # FastText n-gram buckets: the planted corpus needs few, and 2M x 64 floats is 0.5 GB

    def flags(self) -> list[str]:
        """The same parameters as ``jobs.refresh`` flags (``vector_size`` -> ``--vector-size 64``)."""
        values = asdict(self)
        sg, model, bucket = values.pop("sg"), values.pop("model"), values.pop("bucket")
        flags = [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]
        flags += ["--model", model] + (["--sg"] if sg else [])
        return flags + (["--bucket", str(bucket)] if model == "fasttext" else [])

    def gensim(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(
            vector_size=self.vector_size,
            window=self.window,
            negative=self.negative,
            hs=0,
            sg=int(self.sg),
            epochs=self.epochs,
            min_count=self.min_count,
            sample=self.sample,
            alpha=self.alpha,
            min_alpha=self.min_alpha,
            workers=self.workers,
            seed=self.seed,
        )
        return {**options, "bucket": self.bucket} if self.model == "fasttext" else options

    def cls(self) -> type[Word2Vec]:
        """gensim's class for this architecture."""
        return FastText if self.model == "fasttext" else Word2Vec

    @property
    def arch(self) -> str:
        return f"{'FastText' if self.model == 'fasttext' else 'Word2Vec'} {'skip-gram' if self.sg else 'CBOW'}"


@dataclass
class Outcome:
    """One approach: its final model's scores and the time its updates took."""

    name: str
    scores: dict[str, dict[str, Any]]
    seconds: float  # the three updates, wall-clock (full retrain: the final retrain alone)
    train_seconds: float  # the three updates, training alone (full retrain: the same as seconds)
    vocab_size: int
    days: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def report(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "vectors"}


@dataclass(frozen=True)
class JobVariant:
    name: str
    flags: tuple[str, ...] = ()  # every run of the lineage, day 0 included
    update_flags: tuple[str, ...] = ()  # the update runs only


def run_job(variant: JobVariant, data: Path, work: Path, params: Params, world: World, k: int) -> Outcome:
    """Day 0 as a first model, then days 1-3 as updates, each one ``jobs.refresh.run`` on the running Ray."""
    from jobs.config import from_args
    from jobs.refresh import run
    from jobs.storage import open_store
    from jobs.storage.publish import fetch_verified, model_files, read_manifest
    from jobs.training import model as gmodel

    store = work / "store"
    work.mkdir(parents=True, exist_ok=True)
    days, seconds, train = [], 0.0, 0.0
    for day in range(DAYS):
        argv = [
            "--input",
            str(data),
            "--store",
            str(store),
            "--glob",
            day_glob(day),
            "--spool-dir",
            str(work),
            "--force",
            *params.flags(),
            *variant.flags,
            *(variant.update_flags if day else ()),
        ]
        start = time.perf_counter()
        summary = run(from_args(argv))
        wall = time.perf_counter() - start
        assert summary.published, summary.message
        days.append(
            {
                "day": day,
                "seconds": round(wall, 3),
                "train": round(summary.timings.get("train", 0.0), 3),
                "tokens": summary.tokens,
                "new_words": summary.new_words,
                "vocab": summary.vocab_size,
                "gate": summary.gate,
                "checks": gate_checks(open_store(str(store)), summary.version),
            }
        )
        if day:
            seconds, train = seconds + wall, train + summary.timings.get("train", 0.0)
        log.info(
            "%s day %d: %.1fs (train %.1fs), vocabulary %d (+%d)%s",
            variant.name,
            day,
            wall,
            summary.timings.get("train", 0.0),
            summary.vocab_size,
            summary.new_words,
            "" if summary.gate.get("passed", True) else f", gate FAILED (forced): {summary.gate['reasons']}",
        )
    opened = open_store(str(store))
    manifest = read_manifest(opened, "latest")
    folder = fetch_verified(opened, "latest", work / "final", model_files(manifest))
    model = gmodel.load(folder / gmodel.MODEL_DIR)
    shutil.rmtree(work, ignore_errors=True)
    return finished(
        variant.name, model.wv, world, k, seconds, train, days, " ".join([*variant.flags, *variant.update_flags])
    )


def gate_checks(store: Any, version: str | None) -> list[dict[str, Any]]:
    """The gate's checks as the version's manifest recorded them, each as name, value, threshold and verdict."""
    from jobs.storage.publish import read_manifest

    if version is None:
        return []
    fields = ("name", "candidate", "threshold", "band", "passed")
    return [{k: c[k] for k in fields if k in c} for c in read_manifest(store, version)["evaluation"]["checks"]]


def finished(
    name: str, vectors: Any, world: World, k: int, seconds: float, train: float, days: list[dict[str, Any]], note: str
) -> Outcome:
    members = member_vectors(vectors, world)
    return Outcome(name, precision_at_k(members, world, k), seconds, train, len(vectors), days, note, members)


def run_plain(days: list[list[list[str]]], params: Params, world: World, k: int) -> Outcome:
    """gensim's documented incremental recipe, in one process, on the same tokenized days."""
    model = params.cls()(days[0], **params.gensim())
    seconds, log_days = 0.0, []
    for day, sentences in enumerate(days[1:], start=1):
        start = time.perf_counter()
        model.build_vocab(sentences, update=True)
        model.train(sentences, total_examples=len(sentences), epochs=params.epochs)
        wall = time.perf_counter() - start
        seconds += wall
        log_days.append({"day": day, "seconds": round(wall, 3), "vocab": len(model.wv)})
        log.info("plain gensim update day %d: %.1fs, vocabulary %d", day, wall, len(model.wv))
    return finished(
        "plain gensim update",
        model.wv,
        world,
        k,
        seconds,
        seconds,
        log_days,
        "build_vocab(update=True) + train(), iterable mode",
    )


def run_full(days: list[list[list[str]]], params: Params, world: World, k: int) -> tuple[list[Outcome], float]:
    """A fresh gensim model on every day so far, after each day; the last one is the reference.

    One more retrain on all days with another seed shows how far two equally good models differ: the noise
    floor of every number in the table.
    """
    every_day, log_days = 0.0, []
    model = None
    for day in range(1, DAYS):
        corpus = [s for d in days[: day + 1] for s in d]
        start = time.perf_counter()
        model = params.cls()(corpus, **params.gensim())
        wall = time.perf_counter() - start
        every_day += wall
        log_days.append({"day": day, "seconds": round(wall, 3), "vocab": len(model.wv)})
        log.info("full retrain on days 0..%d: %.1fs, vocabulary %d", day, wall, len(model.wv))
    assert model is not None
    final = log_days[-1]["seconds"]
    reference = finished(
        "full retrain (reference)", model.wv, world, k, final, final, log_days, "Word2Vec(days 0..3), iterable mode"
    )
    start = time.perf_counter()
    other = params.cls()(corpus, **{**params.gensim(), "seed": params.seed + 1000})
    wall = time.perf_counter() - start
    again = finished("retrain, another seed", other.wv, world, k, wall, wall, [], "noise floor")
    return [reference, again], every_day


# -- the table ------------------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b and not np.isnan(a) and not np.isnan(b) else float("nan")


COMPARED = ("old", "new_frequent", "moved")  # the groups every approach has, compared as ratios


def rows(outcomes: list[Outcome], k: int) -> list[dict[str, Any]]:
    """One row per approach: scores, times, ratios against plain gensim and the full retrain, the target."""
    plain = next(o for o in outcomes if o.name == "plain gensim update")
    full = next(o for o in outcomes if o.name.startswith("full retrain"))
    jobs = [o for o in outcomes if o.name.startswith("job")]
    table = []
    for o in outcomes:
        row: dict[str, Any] = {"approach": o.name, "note": o.note}
        for g in ("old", "old_dormant", "new", "new_frequent", "new_rare", "moved"):
            row[g] = o.scores[g]["p"]
        row["new_in_vocab"], row["new_rare_in_vocab"] = o.scores["new"]["n"], o.scores["new_rare"]["n"]
        row["overlap_with_full"] = overlap(o.vectors, full.vectors, k)
        row["seconds"], row["train_seconds"] = o.seconds, o.train_seconds
        for base, ref in (("plain", plain), ("full", full)):
            for g in COMPARED:
                row[f"{g}_vs_{base}"] = _ratio(o.scores[g]["p"], ref.scores[g]["p"])
            row[f"time_vs_{base}"] = _ratio(o.seconds, ref.seconds)
        # The product's goal: old and new words at least as good as plain gensim, within 5% of the retrain.
        row["meets_target"] = o in jobs and all(
            row[f"{g}_vs_plain"] >= 1 and row[f"{g}_vs_full"] >= 0.95 for g in ("old", "new_frequent")
        )
        table.append(row)
    return table


def render(table: list[dict[str, Any]], k: int, world: World) -> str:
    rare = sum(w.kind == "rare" for w in world.words)
    head = (
        f"{'approach':<26} {'old':>5} {'dorm':>5} {'new':>5} {'rare (n/' + str(rare) + ')':>14} "
        f"{'moved':>5} {'~full':>5} {'time s':>6} {'train':>5} | {'/plain: old':>11} {'new':>4} {'mov':>4} "
        f"{'time':>5} | {'/full: old':>10} {'new':>4} {'mov':>4} {'time':>5} | goal"
    )
    lines = [
        f"P@{k} of nearest member words in the true group; new = frequent new words (every approach has "
        f"them); rare = rare new words in the vocabulary; ~full = top-{k} overlap with the full retrain",
        head,
        "-" * len(head),
    ]
    for r in table:
        rare_cell = f"{r['new_rare']:.3f} ({r['new_rare_in_vocab']:>2})" if r["new_rare_in_vocab"] else "- ( 0)"
        lines.append(
            f"{r['approach']:<26} {r['old']:>5.3f} {r['old_dormant']:>5.3f} {r['new_frequent']:>5.3f} "
            f"{rare_cell:>14} {r['moved']:>5.3f} {r['overlap_with_full']:>5.3f} {r['seconds']:>6.1f} "
            f"{r['train_seconds']:>5.1f} | {r['old_vs_plain']:>11.3f} {r['new_frequent_vs_plain']:>4.2f} "
            f"{r['moved_vs_plain']:>4.2f} {r['time_vs_plain']:>5.1f} | {r['old_vs_full']:>10.3f} "
            f"{r['new_frequent_vs_full']:>4.2f} {r['moved_vs_full']:>4.2f} {r['time_vs_full']:>5.2f} | "
            f"{('met' if r['meets_target'] else 'missed') if r['approach'].startswith('job') else '-'}"
        )
    return "\n".join(lines)


# -- the runbook ----------------------------------------------------------------------------------------------


ARCHITECTURES: dict[str, dict[str, Any]] = {
    "w2v-cbow": {"model": "word2vec", "sg": False},
    "w2v-sg": {"model": "word2vec", "sg": True},
    "ft-cbow": {"model": "fasttext", "sg": False},
    "ft-sg": {"model": "fasttext", "sg": True},
}


DEFAULT_VARIANTS = {
    "remember": JobVariant("job (defaults)"),
    "replay0.5": JobVariant("job --replay-fraction 0.5", ("--replay-fraction", "0.5")),
    "replay1": JobVariant("job --replay-fraction 1.0", ("--replay-fraction", "1.0")),
    "gensim": JobVariant("job --vocab-policy gensim", ("--vocab-policy", "gensim")),
}


# Flags that shape the state a lineage keeps between runs: a row applies them from day 0.
LINEAGE_FLAGS = (
    "--replay-fraction",
    "--replay-max-sentences",
    "--vocab-policy",
    "--pending-cap",
    "--max-vocab",
    "--count-half-life",
    "--freeze-known-words",
)


def parse_variant(spec: str) -> JobVariant:
    """``NAME=FLAGS`` as a job row: lineage flags on every run, the others on the update runs only."""
    name, _, text = spec.partition("=")
    words, lineage, update = text.split(), [], []
    while words:
        flag = words.pop(0)
        target = lineage if flag in LINEAGE_FLAGS else update
        target.append(flag)
        if words and not words[0].startswith("--"):
            target.append(words.pop(0))
    return JobVariant(f"job {name}", tuple(lineage), tuple(update))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.drift", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the sentences of every day (1: ~480k tokens)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus; every model's seed is this plus one")
    p.add_argument("--epochs", type=int, default=Params.epochs, help="epochs of every training run")
    p.add_argument("--k", type=int, default=10, help="neighbours scored per word")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="w2v-cbow", help="architecture of every model")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated job rows to run, of: " + ",".join(DEFAULT_VARIANTS) + " (default: all; 'none' for "
        "none); plain gensim and the full retrain always run, as every ratio needs them",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="another job row, e.g. 'alpha 0.01=--alpha 0.01': its updates get FLAGS, and its first run too for "
        "flags whose state a lineage keeps (" + ", ".join(LINEAGE_FLAGS) + "); repeatable",
    )
    p.add_argument("--out", type=Path, default=Path(".bench/drift.json"), help="where to write the JSON")
    p.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder, removed at the end)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("jobs", "shards", "gensim", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    only = set(filter(None, args.only.split(",")))
    unknown = only - {*DEFAULT_VARIANTS, "none"}
    if unknown:
        raise SystemExit(f"--only: unknown rows {sorted(unknown)}; choose from {sorted(DEFAULT_VARIANTS)} or none")
    variants = [v for key, v in DEFAULT_VARIANTS.items() if not only or key in only]
    variants += [parse_variant(spec) for spec in args.variant]

    spec = CorpusSpec(seed=args.seed, scale=args.scale)
    params = Params(epochs=args.epochs, seed=args.seed + 1, **ARCHITECTURES[args.arch])
    world = make_world(spec)
    work = args.work or Path(tempfile.mkdtemp(prefix="drift-"))
    data = work / "data"
    days = write_days(world, data)
    tokens = [sum(map(len, d)) for d in days]
    log.info(
        "corpus: %s tokens by day (%d in all), %d groups (%d dormant after day 0), %d new and %d moved words",
        tokens,
        sum(tokens),
        spec.clusters,
        spec.dormant,
        len(world.group("new")),
        len(world.group("moved")),
    )

    started = time.perf_counter()
    outcomes: list[Outcome] = []
    if variants:
        import ray

        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        temp = tempfile.mkdtemp(prefix="rd-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        ray.init(
            num_cpus=params.workers,
            include_dashboard=False,
            _temp_dir=temp,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        try:
            for i, variant in enumerate(variants):
                outcomes.append(run_job(variant, data, work / f"job-{i}", params, world, args.k))
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
    outcomes.append(run_plain(days, params, world, args.k))
    retrains, every_day = run_full(days, params, world, args.k)
    outcomes += retrains
    full = retrains[0]

    table = rows(outcomes, args.k)
    text = render(table, args.k, world)
    print(text)
    print(
        f"\nfull retrain: {full.seconds:.1f}s for the final one; {every_day:.1f}s if retrained after each of "
        f"days 1-3. Corpus: {sum(tokens):,} tokens ({', '.join(f'{t:,}' for t in tokens)} by day); "
        f"{len(world.group('new'))} new words ({sum(w.kind == 'rare' for w in world.words)} rare), "
        f"{len(world.group('moved'))} moved. Params: {asdict(params)}. Ran {time.perf_counter() - started:.0f}s."
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "k": args.k,
                "corpus": asdict(spec),
                "tokens_by_day": tokens,
                "params": asdict(params),
                "full_retrain_every_day_seconds": every_day,
                "rows": table,
                "details": [o.report() for o in outcomes],
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
            },
            indent=2,
            default=str,
        )
    )
    log.info("wrote %s", args.out)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
