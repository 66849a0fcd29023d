"""The quality gate on real gensim updates, driven as the trainer drives it, without Ray: a young, capped lineage
on a stream whose topics come and go passes every night at default settings, with the lineage's history
travelling from manifest to manifest; updates that break the vectors fail, each naming the check that caught it.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.config import GateConfig, TrainingConfig, UpkeepConfig
from jobs.training import evaluate, gate, upkeep
from jobs.training import model as gmodel
from jobs.training.spool import Layout, Spool
from tests.support.corpora import LETTERS, clustered, word

TOPICS = 8


def spool(path: Path, docs: list[str]) -> tuple[Layout, dict[str, int]]:
    writer = Spool(path)
    writer.write(("\n".join(docs) + "\n").encode(), path.name)
    return writer.close(), dict(collections.Counter(t for d in docs for t in d.split()))


def night(day: int, rng: random.Random) -> list[str]:
    """Two topics speak every night, two of six others in turn (each silent for two nights in three, long
    enough for the cap to prune its words), plus twelve strings never seen before, each 3 to 5 times."""
    active = [0, 1] + [t for t in range(2, TOPICS) if (day + 3 * t) % (TOPICS - 2) < 2]
    docs = clustered(300, clusters=TOPICS, seed=day, active=active, members=60)
    for j in range(12):
        fresh = word(f"z{LETTERS[day % 26]}{LETTERS[day // 26]}", j)
        docs += [f"{fresh} {rng.choice(docs).split()[0]}"] * rng.randint(3, 5)
    return docs


def test_thirty_nights_of_a_churning_capped_young_lineage_pass_and_its_band_then_catches_half_a_scramble(
    tmp_path: Path,
) -> None:
    training = TrainingConfig(min_count=3, vector_size=6, epochs=3, workers=1, sample=1e-2)
    life = UpkeepConfig(max_vocab=400, count_half_life=0.0, freeze_known_words=False)
    config = GateConfig()
    rng = random.Random(0)
    model, pending, manifest = gmodel.create(training), {}, None
    removed, overlaps, bounds = 0, [], []
    for day in range(30):
        docs = night(day, rng)
        corpus, counts = spool(tmp_path / "corpus.txt", docs)
        history = gate.history_of(manifest, config.history)  # the parent's manifest, as parent.load reads it
        before = evaluate.baseline(model.wv, config, {}, history) if day else None
        step = upkeep.decay_grow_cap(model, counts, len(docs), pending, None, training, life)
        gmodel.train(model, corpus, training, 1, update=day > 0)
        result = evaluate.evaluate(before, model.wv, config, {})
        assert result["passed"], (day, result["reasons"])
        assert len(model.wv) <= 400
        pending, removed = step.pending, removed + step.removed
        manifest = {"evaluation": {k: result[k] for k in ("passed", "reasons", "checks")}}  # as report.py writes
        if day:
            checks = {c["name"]: c for c in result["checks"]}
            assert set(checks) == {gate.OVERLAP, gate.NORMS, gate.COLLAPSE, gate.FINITE}
            overlap = checks[gate.OVERLAP]
            assert overlap["history"] == overlaps[-config.history :]  # what the band was drawn from
            overlaps.append(overlap["candidate"])
            bounds.append((overlap["floor"]["versions"], overlap["floor"]["bound"]))
    assert removed > 1000  # the cap pruned every night: silent topics' words, then the strings seen once
    # no history on the first update, a young lineage's looser floor for the next nine (below what chance
    # reaches at first), then the band of the last ten versions
    assert [n for n, _ in bounds] == [*range(10), *[10] * 19]
    assert {b for _, b in bounds[:10]} == {"chance", "young lineage"} and bounds[1] == (1, "chance")
    assert {b for _, b in bounds[10:]} == {"lineage band"}
    print(f"overlaps of 29 nightly updates: {min(overlaps):.3f} to {max(overlaps):.3f}")

    # The lineage knows what its updates keep: a candidate that keeps half as much fails its band, which a
    # young lineage (or the fixed floor of chance) would let through.
    before = evaluate.baseline(model.wv, config, {}, gate.history_of(manifest, config.history))
    young = evaluate.baseline(model.wv, config, {}, [])
    corpus, counts = spool(tmp_path / "corpus.txt", night(30, rng))
    upkeep.decay_grow_cap(model, counts, 300, pending, None, training, life)
    gmodel.train(model, corpus, training, 1, update=True)
    shuffled = np.random.default_rng(1).permutation(len(model.wv))[: len(model.wv) * 2 // 3]
    model.wv.vectors[shuffled] = model.wv.vectors[np.sort(shuffled)]  # two thirds of the rows swap places
    judged = evaluate.evaluate(before, model.wv, config, {})
    [overlap] = [c for c in judged["checks"] if c["name"] == gate.OVERLAP]
    assert [c["name"] for c in judged["checks"] if not c["passed"]] == [gate.OVERLAP]
    assert overlap["floor"]["bound"] == "lineage band"
    assert (
        overlap["candidate"] < overlap["threshold"] == pytest.approx(config.keep * np.median(overlaps[-10:]), abs=1e-4)
    )
    assert evaluate.evaluate(young, model.wv, config, {})["passed"]


def trained_parent(tmp_path: Path, training: TrainingConfig) -> Path:
    model = gmodel.create(training)
    corpus, counts = spool(tmp_path / "day0.txt", clustered(600, seed=1))
    upkeep.decay_grow_cap(model, counts, 600, {}, None, training, UpkeepConfig(max_vocab=0))
    gmodel.train(model, corpus, training, 1)
    gmodel.save(model, tmp_path / "parent")
    return tmp_path / "parent" / gmodel.MODEL_DIR


def updated(parent: Path, tmp_path: Path, training: TrainingConfig, history: list[float]) -> tuple[Any, Any]:
    """The parent's baseline (with the lineage's ``history``), and the parent after one real update."""
    model = gmodel.load(parent, spare_rows=None)
    before = evaluate.baseline(model.wv, GateConfig(), {}, history)
    corpus, counts = spool(tmp_path / "day1.txt", clustered(600, seed=2))
    upkeep.decay_grow_cap(model, counts, 600, {}, None, training, UpkeepConfig(max_vocab=0))
    gmodel.train(model, corpus, training, 1, update=True)
    return before, model.wv


def test_broken_updates_fail_naming_the_check_that_caught_them(tmp_path: Path) -> None:
    training = TrainingConfig(min_count=1, vector_size=24, epochs=3, workers=1, seed=3)
    parent = trained_parent(tmp_path, training)
    history = [0.6, 0.55, 0.7]  # a young lineage: three versions before this one
    config = GateConfig()

    def failing(result: dict[str, Any]) -> list[str]:
        return [c["name"] for c in result["checks"] if not c["passed"]]

    before, ordinary = updated(parent, tmp_path, training, history)
    result = evaluate.evaluate(before, ordinary, config, {})
    assert result["passed"] and failing(result) == []  # the control: the same update, unharmed

    rng = np.random.default_rng(7)
    before, scrambled = updated(parent, tmp_path, training, history)
    scrambled.vectors[:] = rng.permutation(scrambled.vectors)  # rows permuted: every word has another's vector
    result = evaluate.evaluate(before, scrambled, config, {})
    assert failing(result) == [gate.OVERLAP]
    assert result["reasons"][0].startswith("neighbourhood overlap: ")

    before, collapsed = updated(parent, tmp_path, training, history)
    direction = rng.normal(size=collapsed.vector_size).astype(np.float32)
    direction /= np.linalg.norm(direction)
    spread = 1e-3 * rng.normal(size=collapsed.vectors.shape).astype(np.float32)
    collapsed.vectors[:] = np.linalg.norm(collapsed.vectors, axis=1, keepdims=True) * (direction + spread)
    result = evaluate.evaluate(before, collapsed, config, {})
    assert gate.COLLAPSE in failing(result) and gate.NORMS not in failing(result)
    [check] = [c for c in result["checks"] if c["name"] == gate.COLLAPSE]
    # a tiny CBOW model is already one-sided (mean cosine 0.99): the candidate may not take 90% of its spread
    assert check["candidate"] >= 0.9999 > check["threshold"] == round(1 - 0.1 * (1 - check["parent"]), 4)
    assert "collapsed towards one direction" in check["why"]

    before, broken = updated(parent, tmp_path, training, history)
    broken.vectors[broken.key_to_index["kbqab"]] = np.nan  # one context word's row
    result = evaluate.evaluate(before, broken, config, {})
    assert failing(result) == [gate.FINITE]
    assert result["reasons"] == [
        f"finite values: 1 of {len(broken):,} vectors hold NaN or ±inf (the first: 'kbqab'): training diverged"
    ]
    [overlap] = [c for c in result["checks"] if c["name"] == gate.OVERLAP]
    assert overlap["candidate"] is None and overlap["history"] == history  # not measured; the history goes on

    hot = TrainingConfig(**{**training.__dict__, "update_alpha": 5.0})  # 200 times the default rate, really trained
    before, blown = updated(parent, tmp_path, hot, history)
    result = evaluate.evaluate(before, blown, config, {})
    assert gate.NORMS in failing(result)
    [norms] = [c for c in result["checks"] if c["name"] == gate.NORMS]
    assert norms["candidate"] > 2 * config.max_norm_ratio and norms["band"] == [0.1, 10.0]
    assert "learning rate far too high" in norms["why"]


def test_a_parent_that_barely_trained_is_no_reference_but_non_finite_vectors_still_fail(tmp_path: Path) -> None:
    # A first model of 3,600 tokens is still near gensim's initial vectors; its first real update multiplies
    # the norms by about 7 and turns the mean cosine from 0.58 to 0.99: ordinary, not a blow-up or a collapse.
    training = TrainingConfig(min_count=1, vector_size=24, epochs=3, workers=1, seed=1)
    model = gmodel.create(training)
    corpus, counts = spool(tmp_path / "day0.txt", clustered(300, seed=1))
    upkeep.decay_grow_cap(model, counts, 300, {}, None, training, UpkeepConfig(max_vocab=0))
    gmodel.train(model, corpus, training, 1)
    before = evaluate.baseline(model.wv, GateConfig(), {}, [])
    corpus, counts = spool(tmp_path / "day1.txt", clustered(300, seed=2))
    upkeep.decay_grow_cap(model, counts, 300, {}, None, training, UpkeepConfig(max_vocab=0))
    gmodel.train(model, corpus, training, 1, update=True)
    result = evaluate.evaluate(before, model.wv, GateConfig(), {})
    checks = {c["name"]: c for c in result["checks"]}
    assert result["passed"] and checks[gate.NORMS]["candidate"] > 5
    assert checks[gate.COLLAPSE]["candidate"] > 0.98 and checks[gate.COLLAPSE]["parent"] < 0.7
    for name in (gate.OVERLAP, gate.NORMS, gate.COLLAPSE):
        assert checks[name]["why"].startswith("not judged: the parent has barely trained"), name
    model.wv.vectors[3] = np.inf
    result = evaluate.evaluate(before, model.wv, GateConfig(), {})
    assert [c["name"] for c in result["checks"] if not c["passed"]] == [gate.FINITE]
