"""The typed manifest: a manifest written before it existed parses and round-trips byte for byte, a hostile one
is refused in one place, and a Draft commits a version (files, signed manifest, pointer) or leaves none."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jobs import retention
from jobs.errors import ConflictError, IntegrityError
from jobs.storage import LocalStore, Signing, signing
from jobs.storage.manifest import FileEntry, Manifest
from jobs.storage.publish import Draft, current, load_manifest, move_pointer, read_manifest, version_key
from jobs.storage.signed import check_pointer, parse_pointer
from jobs.versions import list_versions

PARENT, VERSION = "20261207T031522Z-bc11a1", "20261207T031530Z-b02260"

#: the manifest of an update, exactly as the refresh wrote it before manifests were typed (a test store's)
WRITTEN_BEFORE = rb"""{
  "consumed": {
    "bytes": 8997,
    "named": 1,
    "partitions": 1
  },
  "created_at": "2026-12-07T03:15:36Z",
  "diff": {
    "added": 3,
    "from": "20261207T031522Z-bc11a1",
    "moved": 56,
    "removed": 0,
    "threshold": 0.05,
    "to": "20261207T031530Z-b02260"
  },
  "documents": 300,
  "evaluation": {
    "checks": [
      {
        "candidate": 0.1444,
        "name": "neighbourhood overlap",
        "passed": true,
        "threshold": 0.1
      }
    ],
    "passed": true,
    "reasons": []
  },
  "files": {
    "config.json": {
      "sha256": "d9badd13761493a8d355130a446a7c1cd55e6311f855814a98b55ab358bf7ec4",
      "size": 2340
    },
    "diff.parquet": {
      "sha256": "42732c82ae91d8075ad9172d39d170044853dac53f387dc3290b82d9dacc7607",
      "size": 9958
    },
    "ledger-delta.parquet": {
      "sha256": "d1725e3cf2b767edd2092e760d222ed1e7a6ea90255d6480a4415bbf84ecce10",
      "size": 1867
    },
    "model/cum_table.npy": {
      "sha256": "adf7a2c6b17c384bb7b76a850e8e58820c2ca1de64af48f14b6e131d25230d3b",
      "size": 364
    },
    "model/params.json": {
      "sha256": "dee5cff5cc83ebf9ac80a63bbeb1a61c24d2c1221968aa3aa1df2829f1671f67",
      "size": 13511
    },
    "model/sample_int.npy": {
      "sha256": "a6ce603bf1b0118ebafbb12892abd6bed766bcbbff8e46f7d45ec0f1abdc0d16",
      "size": 364
    },
    "model/syn1neg.npy": {
      "sha256": "9bb90804f457b468f2dec79146c3594882c26897a3f640260a7e0da158a0e7fc",
      "size": 5792
    },
    "model/vectors.npy": {
      "sha256": "dc863285863c7082eef550b81a04f930f78b0f84045fc4224328f6b1e6809fab",
      "size": 5792
    },
    "model/vectors_lockf.npy": {
      "sha256": "4396be9607d0a994dba58eb282e281a00da2c554c420229e52b8900d8ac701b1",
      "size": 132
    },
    "model/vocab.parquet": {
      "sha256": "2e7db24ef33e8a619ca6c87b081d98714ef80fe2df809d886faa269cfb4023a8",
      "size": 1131
    },
    "pending.parquet": {
      "sha256": "8e8f738cf1bee98886ce1c08cf74805ea39c32e95b4d40750980658a4ef3154b",
      "size": 509
    },
    "report.json": {
      "sha256": "8cdc597dc0b83e84969e1846d83195d938ada805d4c7175425542b31e3015cc1",
      "size": 5805
    },
    "report.md": {
      "sha256": "1a791000539fea55626256d3034c54efeb75e13a2254d070212a53f997ef57e9",
      "size": 2344
    }
  },
  "format": 1,
  "learning_rate": {
    "decay": "linear over each thread's equal share of every epoch",
    "end": 0.0001,
    "first_batch": 0.025,
    "last_batch": 0.0032125,
    "source": "--alpha",
    "start": 0.025
  },
  "ledger": {
    "added": 1,
    "chain": [
      {
        "file": "ledger.parquet",
        "sha256": "cbb9bba0a9bc83888bac25560b6d320698bd69f45c0f39436ac576e93a36a29d",
        "size": 1867,
        "version": "20261207T031522Z-bc11a1"
      }
    ],
    "kind": "delta",
    "rows": 2
  },
  "lifecycle": {
    "align": false,
    "count_half_life": 180.0,
    "drift": {
      "changed": 56,
      "mean_distance": 0.172407,
      "neighbours_kept": 0.3,
      "p99_distance": 0.324222,
      "shared_words": 56
    },
    "freeze_known_words": false,
    "frozen": false,
    "known_words": 56,
    "max_vocab": 0,
    "most_frequent_removed": [],
    "removed": 0
  },
  "lineage": {
    "architecture": {
      "cbow_mean": 1,
      "min_count": 1,
      "model": "word2vec",
      "negative": 5,
      "ns_exponent": 0.75,
      "sample": 0.001,
      "sg": 0,
      "vector_size": 24,
      "window": 5
    },
    "changed": [],
    "tokenizer": {
      "deaccent": false,
      "lowercase": true,
      "max_token_len": 40,
      "min_token_len": 2,
      "token_pattern": "[\\p{L}\\p{M}]+"
    }
  },
  "model": "word2vec",
  "new_words": 3,
  "new_words_sample": [
    "novelab",
    "novelaa",
    "novelba"
  ],
  "outside_training": 6.8,
  "parent": "20261207T031522Z-bc11a1",
  "partitions": [
    {
      "key": "dt=2/part-0.parquet",
      "mtime_ns": 1796613330064064910,
      "size": 8997,
      "uri": "/tmp/pytest-of-root/pytest-268/test_first_update_and_nothing_0/data/dt=2/part-0.parquet"
    }
  ],
  "peak_memory_mb": {
    "evaluate": 251.9,
    "load": 242.4,
    "parent_wait": 242.5,
    "save": 254.9,
    "train": 252.1,
    "upload": 253.2,
    "vocabulary": 242.5
  },
  "rejected": [],
  "rejections": {
    "count": 0,
    "partitions": []
  },
  "sentences": 300,
  "timings": {
    "evaluate": 0.006,
    "load": 3.518,
    "parent_wait": 0.012,
    "save": 0.031,
    "tokenize": 3.184,
    "train": 0.085,
    "upload": 0.044,
    "vocabulary": 0.001
  },
  "tokenized_in_trainer": true,
  "tokenizer": {
    "deaccent": false,
    "lowercase": true,
    "max_sentence_tokens": 9999,
    "max_token_len": 40,
    "min_token_len": 2,
    "token_pattern": "[\\p{L}\\p{M}]+"
  },
  "tokenizing_fallback": null,
  "tokens": 3600,
  "trained": {
    "effective_per_epoch": [
      1104,
      1106,
      1073,
      1065,
      1056,
      1099,
      1084,
      1079
    ],
    "epochs": 8,
    "summary": "trained 3,600 of 3,600 tokens per epoch",
    "threads": 2,
    "tokens_per_epoch": 3600,
    "trained_per_epoch": [
      3600,
      3600,
      3600,
      3600,
      3600,
      3600,
      3600,
      3600
    ]
  },
  "training": {
    "alpha": 0.025,
    "bucket": 2000000,
    "cbow_mean": 1,
    "epochs": 8,
    "max_n": 6,
    "min_alpha": 0.0001,
    "min_count": 1,
    "min_n": 3,
    "model": "word2vec",
    "negative": 5,
    "ns_exponent": 0.75,
    "pending_cap": 1000000,
    "replay_fraction": 0.0,
    "replay_max_sentences": 100000,
    "sample": 0.001,
    "seed": 1,
    "sg": 0,
    "update_alpha": null,
    "vector_size": 24,
    "vocab_policy": "remember",
    "window": 5,
    "workers": 2
  },
  "version": "20261207T031530Z-b02260",
  "vocab_size": 59
}"""

#: a manifest of the first, pickled model format, from before ``format`` and the run's counts were recorded
PICKLED_ERA = b'{"version": "v1", "parent": null, "files": {"model/embedding.model": {"size": 3, "sha256": "%s"}}}' % (
    b"a" * 64
)


def test_a_manifest_written_before_parses_to_typed_fields_and_round_trips_byte_for_byte() -> None:
    m = Manifest.parse(WRITTEN_BEFORE, "models", VERSION)
    assert (m.version, m.parent, m.model, m.format, m.tokens, m.vocab_size) == (
        VERSION,
        PARENT,
        "word2vec",
        1,
        3600,
        59,
    )
    assert m.files["model/params.json"] == FileEntry(
        13511, "dee5cff5cc83ebf9ac80a63bbeb1a61c24d2c1221968aa3aa1df2829f1671f67"
    )
    assert len(m.files) == 13 and not m.pickled and m.vector_size == 24 and m.partitions_consumed == 1
    assert m.new_words_sample == ("novelab", "novelaa", "novelba") and m.created_at == "2026-12-07T03:15:36Z"
    assert [link["version"] for link in m.ledger["chain"]] == [PARENT] and m.lifecycle["known_words"] == 56
    assert m.evaluation["passed"] is True and m.learning_rate["start"] == 0.025 and m.carried_from is None
    assert m.section("lineage")["architecture"]["vector_size"] == 24 and m.section("tables") is None
    assert sorted(m.model_names)[:2] == ["model/cum_table.npy", "model/params.json"]
    # nothing lost: every key (the ones no field names too), as a dict and as a read-only mapping
    assert m.to_dict() == json.loads(WRITTEN_BEFORE) == dict(m) and m["outside_training"] == 6.8
    assert m.data == WRITTEN_BEFORE and Manifest.create(m.to_dict()).data == WRITTEN_BEFORE
    copy = m.to_dict()
    copy["files"].clear()
    assert len(m.files) == 13 and len(m["files"]) == 13  # a copy, not a view

    old = Manifest.parse(PICKLED_ERA, "models", "v1")
    assert (old.format, old.tokens, old.vocab_size, old.model, old.training, old.pickled) == (
        None,
        0,
        0,
        None,
        {},
        True,
    )
    assert old.data == PICKLED_ERA  # kept as read: re-serialised it would gain ``format`` and lose its signature


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"tokens": "3600"}, "the manifest of v1 in models: its 'tokens' is '3600', not a int"),
        ({"evaluation": ["passed"]}, "its 'evaluation' is ['passed'], not a dict"),
        ({"parent": "../v0"}, "the manifest of v1 in models, as its parent, names the version '../v0'"),
        ({"files": {"../x": {"size": 1, "sha256": "a" * 64}}}, "names the file '../x', which is not a file"),
        ({"version": "v2"}, "the manifest of v1 in models names the version 'v2', not v1"),
    ],
)
def test_a_hostile_manifest_is_refused_where_it_is_parsed(edit: dict[str, object], message: str) -> None:
    data = json.dumps({**json.loads(PICKLED_ERA), **edit}).encode()
    with pytest.raises(IntegrityError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Manifest.parse(data, "models", "v1")
    with pytest.raises(IntegrityError, match="is not valid JSON"):
        Manifest.parse(b"{", "models", "v1")


def test_a_draft_commits_once_or_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    key = signing.generate(tmp_path / "k.pem")
    trusted = signing.load_trusted_keys([tmp_path / "k.pem.pub"])
    store = LocalStore(tmp_path / "store", Signing(key, trusted, tmp_path / "seen"))
    root = tmp_path / "store" / "versions"
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "params.json").write_bytes(b"{}")

    with Draft(store, "v1") as draft:
        draft.upload(out)
        draft.put("config.json", b"{}")
        first = draft.commit({"model": "word2vec", "tokens": 7}, expected=None)
    assert (root / "v1" / "manifest.json").read_bytes() == first.data  # the bytes signed are the bytes written
    assert (root / "v1" / "manifest.json.sig").is_file()
    assert load_manifest(store, "latest").data == first.data and first.tokens == 7
    pointer = current(store)
    assert pointer is not None and pointer.version == "v1"
    assert parse_pointer(pointer.data, "p").manifest_sha256 == hashlib.sha256(first.data).hexdigest()

    # building on v1: parent.json while it is written; a failure before the manifest removes every file of it
    with pytest.raises(RuntimeError, match="training failed"), Draft(store, "v2", parent="v1") as draft:
        assert json.loads((root / "v2" / "parent.json").read_bytes()) == {"parent": "v1"}
        draft.copy(first, ["model/params.json"])
        raise RuntimeError("training failed")
    assert sorted(p.name for p in root.iterdir()) == ["v1"] and check_pointer(store, store.read_pointer()) == pointer

    # a gate that fails: the version is complete and unpromoted; a pointer that moved: ConflictError, v3 stays
    with Draft(store, "v2", parent="v1") as draft:
        draft.copy(first, ["model/params.json"])
        held = draft.commit({"parent": "v1", "carried_from": "v1"}, expected=pointer, promote=False)
    assert current(store) == pointer and held.files["model/params.json"] == first.files["model/params.json"]
    assert (held.parent, held.carried_from) == ("v1", "v1")
    move_pointer(store, "v2", pointer)
    with pytest.raises(ConflictError), Draft(store, "v3") as draft:
        draft.add({"config.json": {"size": 2, "sha256": first.files["config.json"].sha256}})
        draft.commit({}, expected=pointer)
    assert "v3" in store.list_versions() and current(store).version == "v2"  # type: ignore[union-attr]
    assert read_manifest(store, "v3")["files"] == {"config.json": first.files["config.json"].to_json()}

    # readers: the CLI's listing, and gc, which keeps the newest (v3), the current (v2) and its parent (v1)
    assert list_versions(store).splitlines()[1].split() == ["v1", "-", "0", "7", "0"]
    assert retention.gc(store, keep=1).startswith("removed 0 version(s); kept 3;")
    assert store.list_versions() == ["v1", "v2", "v3"] and (root / "v1" / "manifest.json").read_bytes() == first.data
    assert store.get_bytes(version_key("v2", "manifest.json")) == held.data
