"""What defines a lineage, its tokenizer and its architecture: recorded with every version, kept by every update.

A lineage's vocabulary stays consistent only while every version tokenizes alike: a run with ``--deaccent``
counts ``café`` as ``cafe``, and the model then holds both words, each with half the history. Its architecture
is the model's own: an update loads the parent, so a ``--vector-size`` given to it would do nothing, and a
manifest recording the flag would describe a model that does not exist. So every manifest records what
defines its lineage, from the trained model itself::

    "lineage": {"tokenizer": {"lowercase": true, "deaccent": false, "token_pattern": "...", ...},
                "architecture": {"model": "fasttext", "vector_size": 100, "window": 5, "sg": 0, ...},
                "changed": [{"setting": "deaccent", "from": false, "to": true}]}

and an update (:func:`inherit`) takes every setting from there that its command line does not give. A flag
given with the lineage's value is fine; one given with another value is refused (:class:`ConfigError`, exit 2,
before anything is read or written), naming the setting, both values and the way out:
``--allow-setting-change NAME`` lets this run change a tokenizer setting or one of the architecture settings
gensim applies to a loaded model (``window``, ``sg``, ``negative``, ``sample``, ``min_count``), and the change
is recorded in the version's ``changed`` list; the model kind, vector size and FastText n-grams are the model's
matrices and need a new lineage.

    record = recorded(store, parent_manifest)           # what the parent says, or infers for older ones
    resolved = inherit(config, record)                  # raises ConfigError on an unallowed change
    resolved.config.training.model, resolved.changed    # ('fasttext', [])

Versions written before the record: the architecture is read from the model's ``params.json`` (verified
against the manifest); the tokenizer from the manifest's ``tokenizer`` section (what that run tokenized
with), and where there is none (an imported model), this run's settings are used and recorded from then on,
with a logged note.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.config import (
    ADJUSTABLE_ARCHITECTURE,
    FIXED_ARCHITECTURE,
    TOKENIZER_SETTINGS,
    RefreshConfig,
)
from jobs.errors import ConfigError, IntegrityError
from jobs.storage import Store
from jobs.storage.publish import MODEL_PARAMS, read_recorded

SECTION = "lineage"
_FLOATS = ("sample", "ns_exponent")
_BOOLS = ("lowercase", "deaccent", "sg")


@dataclass(frozen=True)
class Recorded:
    """What a version says defines its lineage; ``None`` for what it does not tell."""

    version: str
    tokenizer: dict[str, Any] | None
    architecture: dict[str, Any] | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolved:
    """An update's config with the lineage's settings filled in, the changes the user allowed (``changed``:
    ``{"setting", "from", "to"}``), the architecture settings the trainer gives the loaded parent (``adjust``),
    and notes on what was inferred."""

    config: RefreshConfig
    changed: list[dict[str, Any]] = field(default_factory=list)
    adjust: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def recorded(store: Store, manifest: Mapping[str, Any]) -> Recorded:
    """The lineage's settings as ``manifest`` records them, or as far as they can be inferred for a version
    written before the record. Raises IntegrityError for a ``params.json`` that is missing, altered or not
    the store's format."""
    version = str(manifest["version"])
    section = manifest.get(SECTION)
    if isinstance(section, dict) and isinstance(section.get("tokenizer"), dict):
        architecture = section.get("architecture")
        return Recorded(version, section["tokenizer"], architecture if isinstance(architecture, dict) else None)
    notes = []
    tokenizer = manifest.get("tokenizer")
    if isinstance(tokenizer, dict) and all(name in tokenizer for name in TOKENIZER_SETTINGS):
        tokenizer = {name: tokenizer[name] for name in TOKENIZER_SETTINGS}
    else:
        tokenizer = None
        notes.append(
            f"version {version} records no tokenizer settings (an imported model, or an older manifest): this run's "
            "(the defaults, unless given) are used and recorded from now on"
        )
    architecture = None
    if MODEL_PARAMS in manifest.get("files", {}):
        architecture = architecture_of(_params(store, manifest), f"{version}/{MODEL_PARAMS}")
    else:
        notes.append(f"version {version} has no {MODEL_PARAMS}: its architecture is not known")
    return Recorded(version, tokenizer, architecture, tuple(notes))


def _params(store: Store, manifest: Mapping[str, Any]) -> dict[str, Any]:
    data = read_recorded(store, manifest, MODEL_PARAMS)
    try:
        params = json.loads(data)
    except ValueError:
        raise IntegrityError(f"{manifest['version']}/{MODEL_PARAMS} is not valid JSON") from None
    if not isinstance(params, dict):
        raise IntegrityError(f"{manifest['version']}/{MODEL_PARAMS} is not a JSON object")
    return params


def architecture_of(params: dict[str, Any], label: str = MODEL_PARAMS) -> dict[str, Any]:
    """The architecture a saved model's ``params.json`` holds, keyed as :func:`jobs.training.model.architecture`
    keys a model's. Raises IntegrityError for parameters of the wrong shape or type."""
    kind, model, vectors = params.get("kind"), params.get("model"), params.get("keyed_vectors")
    if kind not in ("word2vec", "fasttext") or not isinstance(model, dict) or not isinstance(vectors, dict):
        raise IntegrityError(f"{label}: not the parameters of a word2vec or fasttext model")
    wanted = [(model, name) for name in ("vector_size", "window", "sg", "negative", "sample", "min_count")]
    wanted += [(model, name) for name in ("cbow_mean", "ns_exponent") if name in model]
    if kind == "fasttext":
        wanted += [(vectors, name) for name in ("min_n", "max_n", "bucket")]
    arch: dict[str, Any] = {"model": kind}
    for section, name in wanted:
        value = section.get(name)
        numeric = (int, float) if name in _FLOATS else int
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise IntegrityError(f"{label}: {name} is {value!r}, not a number")
        arch[name] = float(value) if name in _FLOATS else int(value)
    return arch


def _flag(name: str) -> str:
    return "--no-lowercase" if name == "lowercase" else f"--{name.replace('_', '-')}"


def _same(name: str, given: Any, before: Any) -> bool:
    if name in _BOOLS:
        return bool(given) == bool(before)
    if name in _FLOATS:
        return float(given) == float(before)
    return bool(given == before)


def _typed(name: str, value: Any) -> Any:
    """A recorded value as the config field holds it (``sg`` is stored as gensim's 0/1, the config's a bool)."""
    if name in _BOOLS:
        return bool(value)
    if name in _FLOATS:
        return float(value)
    return value


def inherit(config: RefreshConfig, record: Recorded | None) -> Resolved:
    """``config`` with every tokenizer and architecture setting it was not given taken from the lineage's
    ``record`` (None: a new lineage, kept as it is). Raises ConfigError naming every given setting that differs
    from the lineage's without ``--allow-setting-change`` (or that no update can change)."""
    if record is None:
        return Resolved(config)
    tokenizer: dict[str, Any] = {}
    training: dict[str, Any] = {}
    changed: list[dict[str, Any]] = []
    refused: dict[str, str] = {}
    fixed: dict[str, str] = {}
    sections: list[tuple[tuple[str, ...], Any, dict[str, Any] | None, dict[str, Any]]] = [
        (TOKENIZER_SETTINGS, config.tokenizer, record.tokenizer, tokenizer),
        (ADJUSTABLE_ARCHITECTURE + FIXED_ARCHITECTURE, config.training, record.architecture, training),
    ]
    for names, current, lineage, resolved in sections:
        for name in names:
            if lineage is None or name not in lineage:
                continue  # unknown (noted), or not part of this kind of model (n-grams of a Word2Vec)
            before, given = lineage[name], getattr(current, name)
            if name not in config.explicit or _same(name, given, before):
                resolved[name] = _typed(name, before)
                continue
            line = f"{_flag(name)} gives {name} {given!r}; the lineage's is {_typed(name, before)!r}"
            if name in FIXED_ARCHITECTURE:
                fixed[name] = line
            elif name not in config.allow_setting_change:
                refused[name] = line
            else:
                changed.append({"setting": name, "from": _typed(name, before), "to": given})
    if fixed or refused:
        raise ConfigError(_refusal(record.version, fixed, refused))
    try:
        config = dataclasses.replace(
            config,
            tokenizer=dataclasses.replace(config.tokenizer, **tokenizer),
            training=dataclasses.replace(config.training, **training),
        )
    except ConfigError as exc:
        raise ConfigError(f"the settings of the lineage of {record.version} with this run's flags: {exc}") from None
    adjust = tuple(c["setting"] for c in changed if c["setting"] in ADJUSTABLE_ARCHITECTURE)
    return Resolved(config, changed, adjust, record.notes)


def _refusal(version: str, fixed: dict[str, str], refused: dict[str, str]) -> str:
    parts = [f"this run's flags differ from what defines the lineage (recorded by version {version}):"]
    parts += [f"  - {line}" for line in [*fixed.values(), *refused.values()]]
    if fixed:
        parts.append(
            "The model kind, vector size and FastText n-grams are the model's matrices and cannot change on an "
            "update: drop those flags, or start a new lineage (another --store, or `python -m jobs.versions import "
            "--new-lineage`)."
        )
    if refused:
        allow = " ".join(f"--allow-setting-change {name.replace('_', '-')}" for name in refused)
        parts.append(
            "An update keeps its lineage's settings, which it inherits when the flags are left out. To change them "
            f"from this version on, pass {allow} (recorded in the manifest; a tokenizer change splits the "
            "vocabulary between the old and the new forms of a word)."
        )
    return "\n".join(parts)


def section(config: RefreshConfig, architecture: dict[str, Any], changed: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's ``lineage`` section: this version's tokenizer, its model's architecture, what changed."""
    return {
        "tokenizer": {name: getattr(config.tokenizer, name) for name in TOKENIZER_SETTINGS},
        "architecture": architecture,
        "changed": changed,
    }
