"""What a refresh did: the manifest's fields, the refresh report, and the final summary.

The refresh report (``report.md`` and ``report.json`` in every version) lists the partitions consumed (the
Markdown and the manifest the first :data:`MANIFEST_PARTITIONS`, with a count of all) and rejected, the token
counts, the new words with their nearest neighbours, the old words whose neighbourhoods changed most, the
words pruned by ``--max-vocab`` (how many, the most frequent of them), how far the known words drifted from
the parent (mean and 99th percentile cosine distance, share of top-10 neighbours kept), and the quality
gate's results against the parent, and where the run's time went: each phase, the total, and
``outside_training``, the total less the training phase (what the job costs beyond gensim's ``train()``).
The summary is printed at the end of a run for a human and, with ``--json``, as one JSON line.

    details = details(config, ingest, candidate, parent_manifest, seconds=28.0)
    print(markdown(details))                               # doctest: +SKIP
    print(json_line(summary))                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.config import RefreshConfig, to_dict

if TYPE_CHECKING:
    from jobs.ingest import IngestResult
    from jobs.lineage.rejections import Rejection
    from jobs.storage.manifest import Manifest
    from jobs.training.trainer import Candidate
    from shards.partitions import Partition


#: how many of a version's partitions its manifest and ``report.md`` name (``report.json`` names all)
MANIFEST_PARTITIONS = 1000


@dataclass
class Summary:
    """What a refresh did. Contains no configuration values that could hold secrets."""

    version: str | None
    parent: str | None
    published: bool
    partitions: int = 0
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    new_words: int = 0
    vocab_size: int = 0
    removed_words: int = 0  # pruned by --max-vocab
    trained: str = ""  # "trained N of N tokens per epoch ...", as the trainer counted it
    seconds: float = 0.0
    store: str = ""
    message: str = ""
    rejected: list[dict[str, str]] = field(default_factory=list)
    rejected_before: list[dict[str, str]] = field(default_factory=list)  # found bad earlier, left alone
    rewritten: list[str] = field(default_factory=list)
    waiting: list[dict[str, str]] = field(default_factory=list)
    neighbours: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    outside_training: float = 0.0  # seconds less the training phase
    gate: dict[str, Any] = field(default_factory=dict)
    table: dict[str, Any] = field(default_factory=dict)  # a table input's account (shards.tables.Changes.report)
    plan: dict[str, Any] = field(default_factory=dict)  # --dry-run: what a run would do (jobs.plan.preview)


def outside_training(seconds: float, timings: dict[str, float]) -> float:
    """The run's seconds less its training phase: what the job costs beyond gensim's ``train()``."""
    return max(0.0, seconds - timings.get("train", 0.0))


def timings_of(ingest: IngestResult, candidate: Candidate) -> dict[str, float]:
    """Each phase's seconds: tokenizing (the driver's), then the trainer's own."""
    return {"tokenize": ingest.seconds, **candidate.timings}


def details(
    config: RefreshConfig, ingest: IngestResult, candidate: Candidate, parent: Manifest | None, seconds: float
) -> dict[str, Any]:
    """The refresh report's content (stored as report.json, rendered as report.md); ``seconds``: the run's
    time so far (training, evaluation and upload done)."""
    timings = timings_of(ingest, candidate)
    return {
        "version": candidate.version,
        "parent": (parent.version if parent else None),
        "input": config.input,
        "partitions": [p.uri for p in ingest.consumed],
        "rejected": [{"uri": e.uri, "cause": e.cause} for e in ingest.rejected],
        "documents": ingest.documents,
        "sentences": ingest.sentences,
        "tokens": ingest.tokens,
        "vocabulary": {
            "before": candidate.vocab_before,
            "after": candidate.vocab_size,
            "new": len(candidate.new_words),
        },
        "new_words": [{"word": w, "neighbours": candidate.neighbours.get(w, [])} for w in candidate.new_words[:20]],
        "changed_words": candidate.evaluation.get("changed", []),
        "lifecycle": upkeep_fields(config, candidate),
        "evaluation": {k: candidate.evaluation[k] for k in ("passed", "reasons", "checks")},
        "carried": candidate.carried,
        "trained": candidate.trained,
        "learning_rate": candidate.learning_rate,
        "seconds": round(seconds, 3),
        "outside_training": round(outside_training(seconds, timings), 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def manifest_fields(
    config: RefreshConfig,
    ingest: IngestResult,
    candidate: Candidate,
    parent: Manifest | None,
    seconds: float,
) -> dict[str, Any]:
    """Everything the manifest records about a version but its files (no credentials: config holds none);
    ``seconds``: the run's time so far."""
    resolved = to_dict(config)
    timings = timings_of(ingest, candidate)
    return {
        "version": candidate.version,
        "parent": (parent.version if parent else None),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": candidate.model_kind,
        "training": {**resolved["training"], **candidate.architecture},  # the model's own, over the flags
        "learning_rate": candidate.learning_rate,
        "tokenizer": resolved["tokenizer"],
        **consumed_fields(ingest.consumed),
        "rejected": [{"uri": e.uri, "cause": e.cause} for e in ingest.rejected],
        "documents": ingest.documents,
        "sentences": ingest.sentences,
        "tokens": ingest.tokens,
        "new_words": len(candidate.new_words),
        "new_words_sample": candidate.new_words[:100],
        "vocab_size": candidate.vocab_size,
        "lifecycle": upkeep_fields(config, candidate),
        "diff": candidate.diff,  # diff.parquet beside the manifest: the words added, moved and removed
        "trained": candidate.trained,
        "evaluation": {k: candidate.evaluation[k] for k in ("passed", "reasons", "checks")},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "outside_training": round(outside_training(seconds, timings), 3),
        "peak_memory_mb": candidate.peak_memory_mb,
        "tokenizing_fallback": ingest.fallback,  # why tokenizing ran in the trainer's reservation only, if it did
        "tokenized_in_trainer": ingest.in_trainer,  # a small increment, tokenized by the training actor itself
    }


def consumed_fields(consumed: list[Partition]) -> dict[str, Any]:
    """The manifest's account of the partitions a version consumed: the first :data:`MANIFEST_PARTITIONS` of
    them (``partitions``) and a summary of all (``consumed``). Every one is in the version's ledger rows and
    in ``report.json``; every loader reads the manifest, so a backfill of 100,000 partitions must not make it
    megabytes."""
    return {
        "partitions": [
            {"key": p.key, "uri": p.uri, "size": p.size, "mtime_ns": p.mtime_ns} for p in consumed[:MANIFEST_PARTITIONS]
        ],
        "consumed": {
            "partitions": len(consumed),
            "bytes": sum(p.size for p in consumed),
            "named": min(len(consumed), MANIFEST_PARTITIONS),
        },
    }


def upkeep_fields(config: RefreshConfig, candidate: Candidate) -> dict[str, Any]:
    """The lineage's cap, decay and freeze (later runs inherit them from here), and what they did: the
    report's and manifest's ``lifecycle`` section, a name kept so stored versions read the same."""
    return {**to_dict(config)["lifecycle"], **candidate.upkeep}


def summary(
    store: str,
    ingest: IngestResult,
    candidate: Candidate,
    parent: Manifest | None,
    rewritten: list[Partition],
    seconds: float,
) -> Summary:
    return Summary(
        version=candidate.version,
        parent=(parent.version if parent else None),
        published=True,
        store=store,
        partitions=len(ingest.consumed),
        documents=ingest.documents,
        sentences=ingest.sentences,
        tokens=ingest.tokens,
        new_words=len(candidate.new_words),
        vocab_size=candidate.vocab_size,
        removed_words=int(candidate.upkeep.get("removed", 0)),
        trained=str(candidate.trained.get("summary", "")),
        seconds=seconds,
        timings=timings_of(ingest, candidate),
        outside_training=outside_training(seconds, candidate.timings),
        rejected=[{"uri": e.uri, "cause": e.cause} for e in ingest.rejected],
        rewritten=[p.uri for p in rewritten],
        neighbours=dict(list(candidate.neighbours.items())[:10]),
        gate={k: candidate.evaluation[k] for k in ("passed", "reasons")},
    )


def skipped(left: list[tuple[Partition, Rejection]]) -> list[dict[str, str]]:
    """Partitions the lineage found bad earlier and a run left alone, with the cause recorded then."""
    return [{"uri": p.uri, "cause": entry.cause} for p, entry in left]


def waiting(held: list[tuple[Partition, str]]) -> list[dict[str, str]]:
    """Files left for a later run because they are still being written, with the reason for each."""
    return [{"uri": p.uri, "reason": reason} for p, reason in held]


def markdown(d: dict[str, Any]) -> str:
    """The refresh report as Markdown."""
    vocab = d["vocabulary"]
    lines = [
        f"# Refresh {d['version']}",
        "",
        f"Parent: {d['parent'] or 'none (first model)'}. Input: `{d['input']}`.",
        "",
        f"- partitions consumed: {len(d['partitions'])}; rejected: {len(d['rejected'])}",
        f"- documents {d['documents']:,}, sentences {d['sentences']:,}, tokens {d['tokens']:,}",
        f"- vocabulary {vocab['before']:,} → {vocab['after']:,} words ({vocab['new']:,} new)",
        *_training_lines(d.get("trained") or {}, d.get("learning_rate") or {}),
        *_time_lines(d),
        "",
        "## Quality gate: " + ("passed" if d["evaluation"]["passed"] else "FAILED"),
        "",
    ]
    lines += [
        f"- {c['name']}: candidate {c.get('candidate')}"
        + (f", parent {c['parent']}" if c.get("parent") is not None else "")
        + f" ({'ok' if c['passed'] else 'fail'})"
        + (f": {c['why']}" if c.get("why") else "")
        for c in d["evaluation"]["checks"]
    ] or [
        "- no checks: the new partitions held no tokens; the parent's model files are reused unchanged"
        if d.get("carried")
        else "- no checks (first model)"
    ]
    lines += _upkeep_lines(d.get("lifecycle", {}))
    lines += ["", "## New words and their nearest neighbours", ""]
    lines += [
        f"- **{w['word']}**: " + ", ".join(f"{n} ({s:.2f})" for n, s in w["neighbours"]) for w in d["new_words"]
    ] or ["- none"]
    lines += ["", "## Old words whose neighbourhoods changed most", ""]
    lines += [
        f"- **{c['word']}** (kept {c['overlap']:.0%}): {', '.join(c['before'])} → {', '.join(c['after'])}"
        for c in d["changed_words"]
    ] or ["- none (first model)"]
    lines += _table_lines(d.get("table") or {})
    if d["rejected"]:
        lines += ["", "## Rejected partitions", ""]
        lines += [f"- `{r['uri']}`: {r['cause']}" for r in d["rejected"]]
    lines += ["", "## Partitions consumed", ""]
    lines += [f"- `{uri}`" for uri in d["partitions"][:MANIFEST_PARTITIONS]]
    if len(d["partitions"]) > MANIFEST_PARTITIONS:
        lines.append(f"- … and {len(d['partitions']) - MANIFEST_PARTITIONS:,} more (report.json lists every one)")
    return "\n".join(lines) + "\n"


def _upkeep_lines(life: dict[str, Any]) -> list[str]:
    cap = f"at most {life['max_vocab']:,} words" if life.get("max_vocab") else "no cap"
    decay = f"half-life {life['count_half_life']:g} refreshes" if life.get("count_half_life") else "no decay"
    lines = [
        "",
        "## Vocabulary lifecycle",
        "",
        f"- {cap}; {decay}; known words {'frozen' if life.get('frozen') else 'trained'}",
    ]
    if life.get("max_vocab"):
        removed = life.get("most_frequent_removed", [])
        lines.append(
            f"- pruned {life.get('removed', 0):,} words"
            + (": " + ", ".join(f"{r['word']} ({r['count']:,})" for r in removed) if removed else "")
        )
    moved = life.get("drift") or {}
    if moved:
        lines.append(
            f"- drift of the {moved['shared_words']:,} known words: cosine distance mean {moved['mean_distance']:.4f}, "
            f"p99 {moved['p99_distance']:.4f}; {moved['changed']:,} vectors changed; "
            f"top-10 neighbours kept {moved['neighbours_kept']:.1%}"
        )
    return lines


def _table_lines(table: dict[str, Any]) -> list[str]:
    """A table input's commits: what was read, and what the model could not follow (rows it cannot untrain)."""
    if not table:
        return []
    lines = [
        "",
        f"## Table `{table['table']}` ({table['format']})",
        "",
        f"- versions after {table['from'] if table['from'] is not None else 'none (its first refresh)'} up to "
        f"{table['to']}: {table['commits']} commit(s), {table['data_commits']} changing data, {table['rewrites']} "
        f"rewrites that change none (not trained again)",
        f"- {table['files']} file(s) of new rows read ({table['read_from_originals']} as appended, before a "
        f"compaction merged them with consumed rows); {table['filtered_files']} left out by --where",
        f"- rows already trained that later commits deleted: {table['deleted_rows']:,}; rewrote (updated, or carried "
        f"through a copy-on-write rewrite): {table['rewritten_rows']:,}; rows written alongside them, not trained: "
        f"{table['untrained_rows']:,} (a model cannot untrain rows)",
    ]
    if table.get("gap"):
        lines.append(f"- history gone, skipped (--resume-expired-table): {table['gap']}")
    return lines


def _training_lines(trained: dict[str, Any], rate: dict[str, Any]) -> list[str]:
    if not trained:
        return []
    return [
        f"- {trained['summary']} ({trained['epochs']} epochs, {trained['threads']} threads)",
        f"- learning rate {rate['start']:g} ({rate['source']}) → {rate['end']:g}, {rate['decay']}: "
        f"{rate['first_batch']:.6g} in the first batch, {rate['last_batch']:.6g} in the last",
    ]


def _time_lines(d: dict[str, Any]) -> list[str]:
    if "seconds" not in d:
        return []
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in d.get("timings", {}).items())
    return [f"- time {d['seconds']:.1f} s, of which {d['outside_training']:.1f} s outside training ({phases})"]


def json_line(summary: Summary) -> str:
    if summary.plan:  # a dry run: its plan alone
        return json.dumps({"dry_run": True, "store": summary.store, **summary.plan}, sort_keys=True)
    data = dataclasses.asdict(summary)
    data["seconds"] = round(summary.seconds, 3)
    data["outside_training"] = round(summary.outside_training, 3)
    data["timings"] = {k: round(v, 3) for k, v in summary.timings.items()}
    return json.dumps(data, sort_keys=True)


def human(summary: Summary) -> str:
    if summary.plan:
        return plan_lines(summary.plan)
    if not summary.published:
        lines = [f"Nothing published: {summary.message}"]
    else:
        lines = [
            f"Published {summary.version} to {summary.store} (parent: {summary.parent or 'none, first model'})",
            f"  partitions {summary.partitions:,}   documents {summary.documents:,}   "
            f"sentences {summary.sentences:,}   tokens {summary.tokens:,}",
            f"  vocabulary {summary.vocab_size:,} words, {summary.new_words:,} new"
            + (f", {summary.removed_words:,} removed" if summary.removed_words else ""),
            *([f"  {summary.trained}"] if summary.trained else []),
            "  time "
            + "  ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items())
            + f"  total {summary.seconds:.1f}s (outside training {summary.outside_training:.1f}s)",
        ]
        for word, near in list(summary.neighbours.items())[:5] if summary.parent else []:
            lines.append(f"  new word {word!r}: " + ", ".join(w for w, _ in near))
    for bad in summary.rejected:
        lines.append(f"  rejected {bad['uri']}: {bad['cause']}")
    for bad in summary.rejected_before:
        lines.append(f"  rejected earlier, left alone until it changes: {bad['uri']} ({bad['cause']})")
    for uri in summary.rewritten:
        lines.append(f"  rewritten since consumed (not retrained): {uri}")
    if summary.table:
        t = summary.table
        lines.append(
            f"  table {t['table']} ({t['format']}): version {t['from']} → {t['to']}, {t['commits']} commit(s), "
            f"{t['files']} file(s) read; consumed rows deleted {t['deleted_rows']:,}, "
            f"rewritten {t['rewritten_rows']:,}, "
            f"rows not trained {t['untrained_rows']:,}"
            + (f"; history gone, skipped: {t['gap']}" if t.get("gap") else "")
        )
    for held in summary.waiting[:10]:
        lines.append(f"  still being written, left for a later run: {held['uri']} ({held['reason']})")
    if len(summary.waiting) > 10:
        lines.append(f"  … and {len(summary.waiting) - 10} more still being written")
    return "\n".join(lines)


def plan_lines(plan: dict[str, Any]) -> str:
    """A dry run's plan (:func:`jobs.plan.preview`) for a person."""
    lines = [
        f"Dry run over {plan['input']} (parent: {plan.get('parent') or 'none, first model'}): {plan['found']} "
        f"partition(s) found, {plan['already_consumed']} already consumed; nothing was trained or written.",
        f"  would consume {len(plan['consume'])}:",
        *[f"    {uri}" for uri in plan["consume"]],
    ]
    for label, key in (("rewritten since consumed, not retrained", "rewritten"), ("deferred", "deferred")):
        if plan[key]:
            lines += [f"  {label} ({len(plan[key])}):", *[f"    {uri}" for uri in plan[key]]]
    if plan["waiting"]:
        lines += [f"  still being written ({len(plan['waiting'])}):"]
        lines += [f"    {w['uri']} ({w['reason']})" for w in plan["waiting"]]
    if plan["rejected"]:
        lines += [f"  rejected ({len(plan['rejected'])}):"]
        lines += [
            f"    {r['uri']}: {r['cause']}" + (" (recorded earlier)" if r["recorded"] else "") for r in plan["rejected"]
        ]
    for change in plan.get("settings_changed", []):
        lines.append(f"  would change {change['setting']} from {change['from']!r} to {change['to']!r}")
    return "\n".join(lines)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
