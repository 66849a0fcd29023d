"""The quality gate's decisions: from measured numbers and the lineage's history to checks that pass or fail.

:mod:`jobs.training.evaluate` measures (neighbourhoods, norms, directions, the evaluation files); this module
decides, in plain functions over numbers, so every rule is tested in milliseconds. Each check is a dict that
the manifest and the report record as it is: its ``name``, its value (``candidate``), the threshold or band
it was held to, ``passed``, and ``why`` in words.

- **finite values**: no vector may hold NaN or ±inf. Needs no parent.
- **vector norms**: the median, over the parent's most frequent words that the update moved, of each word's
  norm in the candidate over its norm in the parent must stay within ``[1/max_norm_ratio, max_norm_ratio]``.
  A learning rate far too high multiplies norms by tens to hundreds; a reset shrinks them to the initial scale.
- **collapse**: the spread of directions of the same words, ``1 - mean pairwise cosine``, must keep at least
  ``min_spread`` of the parent's. Vectors that all point one way have a spread near 0.
- **neighbourhood overlap**: the share of the probe words' nearest neighbours the candidate keeps, beyond
  chance (:func:`jobs.training.evaluate.neighbourhoods`), against a floor drawn from the lineage itself
  (:func:`overlap_floor`). Ordinary updates of a big or churning vocabulary keep few neighbours (0.02 to
  0.3 is common), so no fixed number fits every lineage; what a lineage's own updates keep does.
- **similarity / analogy** files: the score may not drop by more than ``max_drop`` against the parent's.

Norms, collapse and overlap are judged only against a parent that has trained (:func:`untrained`): one still
near gensim's initial vectors has nothing to keep. The lineage's history travels with its versions: the
overlap check records the overlaps it was judged against (``history``), and a child reads its parent's history
plus the parent's own overlap (:func:`history_of`), the last ``history`` of them.

    >>> floor = overlap_floor([0.21, 0.18, 0.2], noise=0.01, chance_sd=0.002, config=GateConfig())
    >>> round(floor.value, 3), floor.bound
    (0.03, 'young lineage')
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.config import GateConfig

OVERLAP = "neighbourhood overlap"
FINITE = "finite values"
NORMS = "vector norms"
COLLAPSE = "collapse"
_MAD_TO_SD = 1.4826  # a normal distribution's standard deviation is 1.4826 times its median absolute deviation


def check(name: str, value: float | None, passed: bool, why: str, **evidence: Any) -> dict[str, Any]:
    """One check as the manifest records it (``candidate`` is the value, the key earlier versions used)."""
    return {"name": name, "candidate": value, "passed": passed, "why": why, **evidence}


def verdict(checks: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """Whether the candidate passes (every check does), and a reason for each check that failed."""
    reasons = [f"{c['name']}: {c['why']}" for c in checks if not c["passed"]]
    return not reasons, reasons


def untrained(parent_norm: float | None, dims: int, config: GateConfig) -> str | None:
    """Why the parent is no reference for the checks against it (None: it is one). gensim starts a vector at
    about ``1/sqrt(3 dims)`` (uniform in ``±1/dims``); a parent whose frequent words are still within
    ``trained_norm`` times that has learnt little, and its first real training moves every norm, direction and
    neighbourhood (a first model of a few thousand tokens: norms x7, mean cosine 0.58 -> 0.99)."""
    initial = 1 / math.sqrt(3 * dims)
    if parent_norm is None or parent_norm >= config.trained_norm * initial:
        return None
    return (
        f"the parent has barely trained (its frequent words' median norm {parent_norm:.3g} is "
        f"{parent_norm / initial:.1f} times gensim's initial {initial:.3g}, under {config.trained_norm}): "
        "it has no neighbourhoods, norms or directions to keep"
    )


# -- the lineage's history --------------------------------------------------------------------------------------


def history_of(manifest: Mapping[str, Any] | None, versions: int) -> list[float]:
    """The overlaps of the lineage's last ``versions`` versions, oldest first, as a parent's ``manifest``
    recorded them: the history its own gate was judged against, then its own overlap. A manifest without an
    overlap check (a first model, an import) starts a young lineage."""
    found = [c for c in (manifest or {}).get("evaluation", {}).get("checks", []) if c.get("name") == OVERLAP]
    if not found:
        return []
    recorded = found[0]
    values = [*recorded.get("history", []), recorded.get("candidate")]
    return [float(v) for v in values if _number(v)][-versions:]


def carried(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation of a version that reuses its parent's model files (nothing was trained): no check is
    measured, and the parent's history goes on to the next version unchanged."""
    history = history_of(manifest, 10**6)
    checks = []
    if history:
        why = "the parent's model, unchanged: nothing measured; the lineage's history carried forward"
        checks.append(check(OVERLAP, None, True, why, history=history))
    return {"passed": True, "reasons": [], "checks": checks, "changed": []}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- neighbourhood overlap -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """The overlap a candidate must reach, and what set it."""

    value: float
    bound: str  # what set the floor: "chance", "lineage band", "young lineage" or "--gate-min-overlap"
    chance: float  # sigmas x the spread of the overlap of random vectors, in this run
    lineage: float | None  # the floor the history draws (None: no history)
    median: float | None
    spread: float | None  # the robust standard deviation used for the band (established lineages)
    versions: int
    full: int  # the versions of history an established lineage has (--gate-history)

    def describe(self) -> str:
        if self.bound == "chance":
            return f"{self.value:.4f}, what random vectors reach by chance here ({self.versions} versions of history)"
        if self.bound == "--gate-min-overlap":
            return f"{self.value:.4f}, set by --gate-min-overlap"
        if self.bound == "young lineage":
            return (
                f"{self.value:.4f}, a young lineage's: median {self.median:.4f} of its {self.versions} "
                f"versions of history x {self.versions}/{self.full}"
            )
        return f"{self.value:.4f}, the lineage's band: median {self.median:.4f} of its last {self.versions} versions"


def overlap_floor(history: Sequence[float], noise: float, chance_sd: float, config: GateConfig) -> Floor:
    """The least overlap a candidate may keep, given the lineage's ``history`` of overlaps and this run's
    ``noise`` (the standard error of the measured overlap) and ``chance_sd`` (the spread of the overlap that
    random vectors would keep, around 0).

    - With ``config.history`` versions or more, the band is ``median - sigmas * spread``, where ``spread`` is
      the larger of the history's robust standard deviation (1.4826 MAD) and this run's noise, and it is never
      above ``keep * median``: a lineage whose updates keep 0.2 of their neighbourhoods fails at 0.1, one whose
      updates keep 0.02 at 0.01.
    - A young lineage (fewer versions) gets a looser floor, ``keep * median * n / history``: nothing with
      no history, and the full floor once the history is complete.
    - Never below ``sigmas`` times what chance reaches (scrambled vectors keep 0 plus noise), nor below
      ``--gate-min-overlap`` when it is given.
    """
    n = len(history)
    chance = config.sigmas * chance_sd
    lineage = median = spread = None
    if n:
        median = statistics.median(history)
        if n >= config.history:
            mad = statistics.median(abs(x - median) for x in history)
            spread = max(_MAD_TO_SD * mad, noise)
            lineage = min(median - config.sigmas * spread, config.keep * median)
        else:
            lineage = config.keep * median * n / config.history
    candidates = [(chance, "chance")]
    if lineage is not None:
        candidates.append((lineage, "lineage band" if n >= config.history else "young lineage"))
    if config.min_overlap is not None:
        candidates.append((config.min_overlap, "--gate-min-overlap"))
    value, bound = max(candidates, key=lambda c: c[0])
    rounded = (_rounded(lineage), _rounded(median), _rounded(spread))
    return Floor(round(value, 4), bound, round(chance, 4), *rounded, n, config.history)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def overlap_check(
    value: float, measured: dict[str, Any], history: Sequence[float], config: GateConfig, untrained: str | None = None
) -> dict[str, Any]:
    """The neighbourhood check: ``value`` (the overlap beyond chance) against :func:`overlap_floor`.
    ``measured`` holds the run's ``noise`` and ``chance_sd`` and is recorded with the check; with ``untrained``
    (why the parent is no reference) it is recorded, and passes."""
    floor = overlap_floor(history, measured["noise"], measured["chance_sd"], config)
    passed = value >= floor.value or untrained is not None
    why = f"{value:.4f} {'>=' if value >= floor.value else '<'} floor {floor.describe()}"
    if untrained is not None:
        why = f"not judged: {untrained} ({why})"
    elif not passed and floor.bound != "chance":
        why += "; a lineage whose updates really changed character can be promoted once with --force"
    return check(
        OVERLAP,
        value,
        passed,
        why,
        threshold=floor.value,
        floor={
            "bound": floor.bound,
            "chance": floor.chance,
            "lineage": floor.lineage,
            "median": floor.median,
            "spread": floor.spread,
            "versions": floor.versions,
        },
        history=[round(x, 4) for x in history],
        **measured,
    )


def skipped_overlap(history: Sequence[float], cause: str) -> dict[str, Any]:
    """The overlap check when it cannot be measured (non-finite vectors): it passes, others fail the
    candidate, and the lineage's history is carried past it."""
    return check(OVERLAP, None, True, f"not measured: {cause}", history=[round(x, 4) for x in history])


# -- checks that need no neighbourhoods ------------------------------------------------------------------------


def finite_check(bad: int, rows: int, example: str | None) -> dict[str, Any]:
    """No vector may hold NaN or ±inf (or values whose squares overflow float32, which no training makes)."""
    if not bad:
        return check(FINITE, 0, True, f"all {rows:,} vectors finite", threshold=0)
    why = f"{bad:,} of {rows:,} vectors hold NaN or ±inf (the first: {example!r}): training diverged"
    return check(FINITE, bad, False, why, threshold=0)


def norm_check(ratio: float | None, words: int, config: GateConfig, untrained: str | None = None) -> dict[str, Any]:
    """The frequent words' median norm ratio (candidate over parent) within ``[1/r, r]``; not judged with
    ``untrained`` (why the parent is no reference)."""
    band = [round(1 / config.max_norm_ratio, 4), config.max_norm_ratio]
    if ratio is None:
        return check(NORMS, None, True, "no frequent word moved (or none with a norm in both versions)", band=band)
    if untrained is not None:
        return check(NORMS, round(ratio, 4), True, f"not judged: {untrained}", band=band)
    passed = band[0] <= ratio <= band[1]
    if passed:
        why = f"the median norm of the {words:,} frequent words moved changed {ratio:.3f} times, within {band}"
    elif ratio > 1:
        why = (
            f"the median norm of the {words:,} frequent words moved grew {ratio:.3g} times (allowed {band[1]}): "
            "a learning rate far too high (--update-alpha / --alpha) blows norms up"
        )
    else:
        why = (
            f"the median norm of the {words:,} frequent words moved shrank to {ratio:.3g} of the parent's (allowed "
            f"{band[0]}): vectors reset or zeroed"
        )
    return check(NORMS, round(ratio, 4), passed, why, band=band)


def collapse_check(
    parent: float | None, candidate: float | None, words: int, config: GateConfig, untrained: str | None = None
) -> dict[str, Any]:
    """The frequent words' spread of directions, ``1 - mean pairwise cosine``, keeps at least ``min_spread``
    of the parent's. A parent already pointing one way (spread <= 0) has nothing to lose; not judged with
    ``untrained`` (why the parent is no reference)."""
    if parent is None or candidate is None:
        return check(COLLAPSE, candidate, True, "fewer than two frequent words moved", parent=parent)
    if untrained is not None:
        why = f"not judged: {untrained}"
        return check(COLLAPSE, round(candidate, 4), True, why, parent=round(parent, 4))
    before, after = 1 - parent, 1 - candidate
    least = config.min_spread * before
    passed = before <= 0 or after >= least
    relation = ">=" if passed else "<"
    why = (
        f"spread of directions of the {words:,} frequent words moved {after:.4f} {relation} {config.min_spread} x the "
        f"parent's {before:.4f}"
    )
    if not passed:
        why += ": the vectors collapsed towards one direction"
    return check(COLLAPSE, round(candidate, 4), passed, why, parent=round(parent, 4), threshold=round(1 - least, 4))


def score_check(
    kind: str, name: str, parent: float | None, candidate: float | None, config: GateConfig
) -> dict[str, Any]:
    """An evaluation file's score may not fall by more than ``max_drop`` below the parent's."""
    if parent is None or candidate is None:
        why = "no score to compare (" + ("no parent" if parent is None else "no pair or question scored") + ")"
        passed = True
    else:
        passed = candidate >= parent - config.max_drop
        why = f"{parent} -> {candidate} ({'within' if passed else 'beyond'} the allowed drop {config.max_drop})"
    return check(f"{kind} {name}", candidate, passed, why, parent=parent, threshold=config.max_drop)
