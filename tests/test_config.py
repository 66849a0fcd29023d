"""The command line takes every default from the config dataclasses, and refuses abbreviated flags."""

from __future__ import annotations

import pytest

from jobs.config import GateConfig, RefreshConfig, TrainingConfig, from_args
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
