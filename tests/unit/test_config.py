"""The command line and the config file take every default from the config dataclasses and reach every field;
abbreviated flags, unknown keys and values of the wrong type are refused."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobs.config import (
    ADJUSTABLE_ARCHITECTURE,
    FIXED_ARCHITECTURE,
    NEW_LINEAGE,
    TOKENIZER_SETTINGS,
    GateConfig,
    ImportConfig,
    RefreshConfig,
    TrainingConfig,
    UpkeepConfig,
    from_args,
    import_config,
    parser,
)
from jobs.config.flags import Setting, add_settings, settings
from jobs.errors import ConfigError
from shards.tokenize import TokenizerConfig
from shards.tokenized import ReadOptions
from tests.support import REPO


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
    assert config.lifecycle == UpkeepConfig(max_vocab=10, freeze_known_words=False)
    recorded = {"max_vocab": 20, "count_half_life": 7.0, "freeze_known_words": True, "removed": 3}
    resolved, changes = config.lifecycle.inherit(recorded)
    # a parent recorded before --align existed: the new lineage's setting (off)
    assert resolved == UpkeepConfig(max_vocab=10, count_half_life=7.0, freeze_known_words=False, align=False)
    assert changes == [
        "--max-vocab changes from 20 (the parent's) to 10",
        "--freeze-known-words changes from True (the parent's) to False",
    ]
    assert UpkeepConfig().inherit(None) == (NEW_LINEAGE, [])
    assert UpkeepConfig().inherit(recorded)[0].count_half_life == 7.0
    assert UpkeepConfig(count_half_life=2).decay == pytest.approx(2**-0.5)
    with pytest.raises(ConfigError, match="--max-vocab must not be negative"):
        UpkeepConfig(max_vocab=-1)
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


# --- every setting described once: flags and the config file generated from the dataclasses ----------------
def _sample(s: Setting) -> Any:
    """A valid value of the setting ``s`` that is not its default."""
    special = {
        "token_pattern": "[a-z]+",
        "since": "2026-01-01",
        "until": "2026-02-01",
        "where": (("region", "eu-*"),),
        "allow_setting_change": ("deaccent",),
    }
    if s.name in special:
        return special[s.name]
    kind, optional, repeated, choices = s.shape
    if repeated:
        return (f"{s.name}.txt",)
    if choices:
        return next(c for c in choices if c != s.default)
    if kind is bool:
        return False if optional else not s.default
    if kind is int:
        return s.default + 1 if isinstance(s.default, int) else 2
    if kind is float:
        return s.default / 2 if s.default else 0.5
    return f"{s.name}-value"


def _flags(s: Setting, value: Any) -> list[str]:
    kind, optional, repeated, _ = s.shape
    if repeated:
        return [a for item in value for a in (s.flag, "=".join(item) if isinstance(item, tuple) else item)]
    if kind is bool:
        return [f"--no-{s.flag[2:]}"] if optional and not value else [s.flag]
    return [s.flag, str(value)]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml("=".join(v) if isinstance(v, tuple) else v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _write(tmp_path: Path, text: str, name: str = "refresh.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_setting_is_reachable_from_its_flag_and_from_the_file_and_both_resolve_alike(tmp_path: Path) -> None:
    found = list(settings(RefreshConfig))
    # each flag argparse knows reaches a field (its dest is the field's name), and each field has a flag
    dests = {a.dest for a in parser()._actions} - {"help", "--config"}
    assert dests == {s.name for s in found} and len(found) == len(dests) >= 80
    values = {s: _sample(s) for s in found}
    argv = [a for s, v in values.items() for a in _flags(s, v)]
    lines = {section: [] for section in dict.fromkeys(s.section for s in found)}
    for s, v in values.items():
        lines[s.section].append(f"{s.name} = {_toml(v)}")
    text = "\n".join(lines.pop("")) + "".join(f"\n[{k}]\n" + "\n".join(v) for k, v in lines.items())
    from_flags = from_args(argv, environ={})
    from_file = from_args(["--config", _write(tmp_path, text)], environ={})
    assert from_flags == from_file
    for s, value in values.items():  # every field got the value given, not its default
        got = getattr(getattr(from_file, s.section) if s.section else from_file, s.name)
        assert got == value and got != s.default, s.key
    assert from_file.explicit == tuple(sorted(set(TOKENIZER_SETTINGS + ADJUSTABLE_ARCHITECTURE + FIXED_ARCHITECTURE)))


def test_a_field_is_described_or_refused() -> None:
    @dataclass(frozen=True)
    class Undescribed:
        plain: int = 1

    with pytest.raises(TypeError, match=r"Undescribed.plain has no flag: declare it with option\(...\)"):
        list(settings(Undescribed))
    p = parser()
    with pytest.raises(TypeError, match="two settings are named 'epochs'"):
        add_settings(p, [s for s in settings(RefreshConfig) if s.name == "epochs"])
    # the import command's flags are generated too, from ImportConfig and the adoptable architecture
    from jobs.versions import parser as versions_parser

    a = versions_parser().parse_args(["import", "m.bin", "--store", "s", "--window", "3", "--sg", "--kind", "facebook"])
    assert import_config(a, environ={}) == ImportConfig(
        path="m.bin", store="s", kind="facebook", training=TrainingConfig(window=3, sg=True)
    )


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'input = "in"\nstore = "out"\n[training]\nepochs = 3\nalpha = 1\nwindow = 3\n[gate]\nforce = true\n'
        '[read]\npiece_bytes = "1MiB"\n[signing]\ntrusted_keys = ["a.pub"]\n',
    )
    config = from_args(["--config", path, "--epochs", "4", "--store", "flagged"], environ={})
    assert (config.input, config.store, config.training.epochs, config.training.alpha) == ("in", "flagged", 4, 1.0)
    assert (config.gate.force, config.read.piece_bytes, config.signing.trusted_keys) == (True, 1 << 20, ("a.pub",))
    assert config.explicit == ("window",)  # a lineage setting the file gives counts as given


def test_the_config_file_refuses_unknown_keys_and_wrong_types_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "[training]\nepoch = 3": "unknown key 'epoch' in [training]; did you mean 'epochs'?",
        "epochs = 3": "unknown key 'epochs' at the top level; --epochs is set by [training] epochs",
        "[gate]\neval-similarity = ['a.tsv']": "unknown key 'eval-similarity' in [gate]; --eval-similarity is set "
        "by [gate] similarity_files (keys are field names",
        "[trainig]\nepochs = 3": "unknown section [trainig]; the sections are gate, lifecycle, read, readiness,",
        "training = 3": "training is a section; write it as [training]",
        "[training]\nepochs = '3'": "[training] epochs must be an integer, got '3'",
        "[training]\nalpha = true": "[training] alpha must be a number, got True",
        "[training]\nsg = 1": "[training] sg must be true or false, got 1",
        "[gate]\nsimilarity_files = 'a.tsv'": "[gate] similarity_files must be a list (of a string), got 'a.tsv'",
        "[gate]\nsimilarity_files = [1]": "[gate] similarity_files item must be a string, got 1",
        "[read]\npiece_bytes = 1.5": '[read] piece_bytes must be an integer or a size like "256MiB", got 1.5',
        "[read]\npiece_bytes = 'lots'": "[read] piece_bytes: size='lots' is not a size",
        "log_format = 'xml'": "log_format must be one of text, json, got 'xml'",
        "where = ['region']": "where item: --where takes KEY=GLOB, got 'region'",
        "[training]\nepochs = 0": "--epochs must be at least 1, got 0",  # the dataclass's own checks
        "epochs = [": "is not valid TOML",
    }
    for n, (text, message) in enumerate(cases.items()):
        path = _write(tmp_path, 'input = "in"\nstore = "out"\n' + text, f"case-{n}.toml")
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            from_args(["--config", path], environ={})
        assert path in str(caught.value) or message.startswith("--"), text
    with pytest.raises(ConfigError, match=re.escape(f"--config {tmp_path}/absent.toml: cannot read it")):
        from_args(["--config", str(tmp_path / "absent.toml")])
    with pytest.raises(SystemExit):  # --input and --store from neither the flags nor the file
        from_args(["--config", _write(tmp_path, 'input = "in"\n')])
    assert "the following arguments are required: --store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        from_args(["--input", "in", "--store", "out", "--gate-probe-word", "3"])
    assert "unrecognized arguments: --gate-probe-word 3" in capsys.readouterr().err


def test_the_documented_config_file_is_one_the_refresh_accepts(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    config = from_args(["--config", _write(tmp_path, example), "--store", "flagged"], environ={})
    assert (config.input, config.store, config.where) == (
        "s3://corpus-bucket/events/",
        "flagged",
        (("region", "eu-*"),),
    )
    assert (config.read.piece_bytes, config.readiness.success_marker, config.training.workers) == (
        256 << 20,
        "always",
        16,
    )
    assert config.gate.similarity_files == ("eval/wordsim353.tsv",) and config.explicit == ("deaccent",)
