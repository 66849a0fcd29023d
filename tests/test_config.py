"""The command line takes every default from the config dataclasses, and refuses abbreviated flags."""

from __future__ import annotations

import pytest

from jobs.config import NEW_LINEAGE, GateConfig, LifecycleConfig, RefreshConfig, TrainingConfig, from_args
from jobs.errors import ConfigError
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions

pytestmark = pytest.mark.unit


def test_flags_not_given_take_the_dataclass_defaults() -> None:
    assert from_args(["--input", "in", "--store", "out"]) == RefreshConfig(input="in", store="out")


def test_given_flags_land_in_their_sections() -> None:
    flags = ["--epochs", "3", "--no-lowercase", "--batch-rows", "10", "--where", "dt=2026-*"]
    config = from_args(["--input", "in", "--store", "out", *flags, "--eval-similarity", "a.tsv", "--force"])
    assert config.training == TrainingConfig(epochs=3)
    assert config.tokenizer == TokenizerConfig(lowercase=False)
    assert config.read == ReadOptions(batch_rows=10)
    assert config.where == (("dt", "2026-*"),)
    assert config.gate == GateConfig(similarity_files=("a.tsv",), force=True)


def test_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        from_args(["--input", "in", "--store", "out", "--epoch", "3"])
    assert "unrecognized arguments: --epoch 3" in capsys.readouterr().err


def test_help_shows_the_dataclass_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        from_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {TrainingConfig().alpha})" in text
    assert f"default: {TrainingConfig().epochs}" in text


def test_lifecycle_flags_follow_the_lineage_unless_given() -> None:
    config = from_args(["--input", "in", "--store", "out", "--max-vocab", "10", "--no-freeze-known-words"])
    assert config.lifecycle == LifecycleConfig(max_vocab=10, freeze_known_words=False)
    recorded = {"max_vocab": 20, "count_half_life": 7.0, "freeze_known_words": True, "removed": 3}
    resolved, changes = config.lifecycle.inherit(recorded)
    # a parent recorded before --align existed: the new lineage's setting (off)
    assert resolved == LifecycleConfig(max_vocab=10, count_half_life=7.0, freeze_known_words=False, align=False)
    assert changes == [
        "--max-vocab changes from 20 (the parent's) to 10",
        "--freeze-known-words changes from True (the parent's) to False",
    ]
    assert LifecycleConfig().inherit(None) == (NEW_LINEAGE, [])
    assert LifecycleConfig().inherit(recorded)[0].count_half_life == 7.0
    assert LifecycleConfig(count_half_life=2).decay == pytest.approx(2**-0.5)
    with pytest.raises(ConfigError, match="--max-vocab must not be negative"):
        LifecycleConfig(max_vocab=-1)
    both = "--align and --freeze-known-words cannot both be on"
    with pytest.raises(ConfigError, match=both):
        from_args(["--input", "in", "--store", "out", "--align", "--freeze-known-words"])
    with pytest.raises(ConfigError, match=both):  # one given, the other the lineage's
        from_args(["--input", "in", "--store", "out", "--align"]).lifecycle.inherit({"freeze_known_words": True})


def test_operating_flags() -> None:
    config = from_args(["--input", "in", "--store", "out", "--tokenizer-wait", "30", "--log-format", "json"])
    assert (config.tokenizer_wait, config.log_format) == (30.0, "json")
    with pytest.raises(ConfigError, match="--tokenizer-wait must be positive, got 0"):
        from_args(["--input", "in", "--store", "out", "--tokenizer-wait", "0"])
    # A trainer node that does not exist yet cannot say how many CPUs the actor should reserve.
    with pytest.raises(ConfigError, match="--require-trainer-resource needs --workers N, the CPUs of the trainer"):
        from_args(["--input", "in", "--store", "out", "--require-trainer-resource"])
    config = from_args(["--input", "in", "--store", "out", "--require-trainer-resource", "--workers", "16"])
    assert (config.require_trainer_resource, config.training.workers) == (True, 16)


def test_json_log_lines_name_their_stage_and_hold_no_credential(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging

    from jobs import logs

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "ray-token-0123456789abcdef")  # KubeRay puts it in every Ray container
    monkeypatch.setenv("EMBEDDING_REFRESH_SIGNING_KEY", "ed25519-secret-key-bytes")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("json")
        logs.run("local-1")
        logs.enter("tokenize")
        secrets = ("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", "ray-token-0123456789abcdef", "ed25519-secret-key-bytes")
        logging.getLogger("jobs.test").warning("key %s token %s signing %s in %s", *secrets, "s3://b/p")
        try:
            raise ValueError("a bug")
        except ValueError:
            logging.getLogger("jobs.test").exception("unexpected")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs.enter("")
        logs.run("")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: first[k] for k in ("level", "logger", "stage", "message", "run")} == {
        "level": "WARNING",
        "logger": "jobs.test",
        "stage": "tokenize",
        "message": "key *** token *** signing *** in s3://b/p",
        "run": "local-1",
    }
    assert second["error"] == "ValueError: a bug" and "Traceback" in second["traceback"]
