"""The command line, generated from the config dataclasses' field descriptions (:mod:`shards.options`).

Every described field becomes one flag whose argparse ``dest`` is the field's name, so a flag reaches its field
by construction and a field cannot lack a flag; :func:`settings` refuses a field that says neither how it is
set nor why not, and two fields that would share a ``dest``. Defaults are not given to argparse (``SUPPRESS``):
a flag not given is absent from the namespace, the dataclass supplies its default, and ``--help`` shows the
dataclass's value. The flag's kind follows the field's type: a ``bool`` is a switch (``--no-X`` when it
defaults to true, ``--X/--no-X`` when None means "the lineage's"), a tuple a repeatable flag, a ``Literal``
or ``choices`` a choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from jobs.config.run import ImportConfig, RefreshConfig
from jobs.config.signing import SIGNING_KEY_ENV, SigningConfig, trusted_keys_from
from jobs.config.training import (
    ADJUSTABLE_ARCHITECTURE,
    FIXED_ARCHITECTURE,
    NEW_LINEAGE,
    TOKENIZER_SETTINGS,
    TrainingConfig,
)
from shards.options import Derived, Option, described

T = TypeVar("T")

#: The ``--help`` group each section's flags are listed in unless a field names another (``ray``: a group that
#: only fields name); the top level (``""``) is argparse's own "options". The order is the order of ``--help``.
GROUPS: dict[str, str | None] = {
    "": None,
    "readiness": "partitions",
    "read": "partitions",
    "tokenizer": "tokenizer",
    "training": "model",
    "lifecycle": "lifecycle (kept from the parent version unless given; a new lineage: "
    + ", ".join(f"{f.name.replace('_', '-')} {getattr(NEW_LINEAGE, f.name)}" for f in dataclasses.fields(NEW_LINEAGE))
    + ")",
    "gate": "quality gate",
    "ray": "ray",
    "signing": "signed versions (docs/signing.md)",
}


#: Where the parsed ``--config`` goes: no field can be called that.
CONFIG_DEST = "--config"


@dataclass(frozen=True)
class Setting:
    """One described field: its ``section`` (the RefreshConfig field holding its dataclass; ``""``: the top
    level), its ``name``, its type and its :class:`~shards.options.Option`."""

    section: str
    name: str
    kind: Any
    option: Option
    default: Any

    @property
    def flag(self) -> str:
        return self.option.flag_for(self.name)

    @property
    def key(self) -> str:
        """Where a config file sets it: ``[section] name`` (or ``name`` at the top level)."""
        return f"[{self.section}] {self.name}" if self.section else self.name

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def shape(self) -> tuple[Any, bool, bool, tuple[Any, ...] | None]:
        """The type of one value, whether it may be None, whether the flag repeats, and the values allowed."""
        kind, optional, repeated = self.kind, False, False
        if typing.get_origin(kind) in (Union, types.UnionType):
            (kind,) = (a for a in typing.get_args(kind) if a is not type(None))
            optional = True
        if typing.get_origin(kind) is tuple:
            kind, repeated = typing.get_args(kind)[0], True
        choices = tuple(self.option.choices) if self.option.choices else None
        if typing.get_origin(kind) is Literal:
            kind, choices = str, typing.get_args(kind)
        return kind, optional, repeated, choices


def settings(cls: type, section: str = "") -> Iterator[Setting]:
    """Every setting of ``cls`` and of the config dataclasses its fields hold, in declaration order. Raises
    TypeError for a field that is neither described nor :func:`~shards.options.derived`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind) and not section:
            yield from settings(kind, f.name)  # type: ignore[arg-type]
            continue
        how = described(f)
        if isinstance(how, Derived):
            continue
        if how is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no flag: declare it with option(...) or derived(...)")
        yield Setting(section, f.name, kind, how, f.default)


def parser() -> argparse.ArgumentParser:
    """The flags of ``python -m jobs.refresh``: ``--config`` and one flag per setting of RefreshConfig."""
    # Defaults live in the dataclasses alone: a flag not given is absent from the namespace (SUPPRESS), so the
    # dataclass (or the config file) supplies it. No abbreviations: a later flag must not change what an old
    # cron line means. --input and --store are required, but may come from the file: checked after merging.
    p = argparse.ArgumentParser(
        prog="python -m jobs.refresh",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        description="Refresh a gensim embedding model from new partitions and publish it as a new version.",
    )
    p.add_argument(
        "--config",
        dest=CONFIG_DEST,
        metavar="FILE.toml",
        help="read settings from this TOML file (docs/configuration.md); a flag given too overrides it",
    )
    for title in GROUPS.values():  # the groups' order in --help, whichever field comes first
        if title:
            p.add_argument_group(title)
    add_settings(p, settings(RefreshConfig))
    return p


def add_settings(p: argparse.ArgumentParser, found: Iterable[Setting], group: str | None = None) -> None:
    """Add a flag for each setting to ``p``, in its ``--help`` group (``group`` for all, when given). Raises
    TypeError when two settings would share a ``dest``."""
    groups: dict[str | None, Any] = {None: p, **{g.title: g for g in p._action_groups}}
    taken = {a.dest for a in p._actions}
    for s in found:
        if s.name in taken:
            raise TypeError(f"two settings are named {s.name!r}: a flag would reach either")
        taken.add(s.name)
        title = group or s.option.group or GROUPS[s.section]
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        groups[title].add_argument(s.flag, default=argparse.SUPPRESS, help=_help(s), **_kind(s))


def _kind(s: Setting) -> dict[str, Any]:
    kind, optional, repeated, choices = s.shape
    o = s.option
    named: dict[str, Any] = {} if not s.flag.startswith("-") else {"dest": s.name}
    if o.metavar:
        named["metavar"] = o.metavar
    if kind is bool and not repeated:
        if optional:
            return {**named, "action": argparse.BooleanOptionalAction}
        return {**named, "action": "store_false" if s.default else "store_true"}
    named["type"] = o.parse or kind
    if choices:
        named["choices"] = choices
    if repeated:
        named["action"] = "append"
    if o.const is not None:
        named.update(nargs="?", const=o.const)
    return named


def _help(s: Setting) -> str:
    """The field's help, with its dataclass default where a value is given (a switch's is the switch)."""
    kind, _, repeated, _ = s.shape
    if (kind is bool and not repeated) or s.required or s.default in (None, (), ""):
        return s.option.help
    return f"{s.option.help} (default: {s.default})" if s.option.help else f"default: {s.default}"


def given(namespace: argparse.Namespace | Mapping[str, Any], found: Iterable[Setting]) -> dict[str, Any]:
    """The values of the settings the flags gave (by field name), a repeated flag's as a tuple."""
    values = vars(namespace) if isinstance(namespace, argparse.Namespace) else namespace
    out = {}
    for s in found:
        if s.name in values:
            value = values[s.name]
            if isinstance(value, list):
                value = tuple(dict.fromkeys(value) if s.option.unique else value)
            out[s.name] = value
    return out


def build(cls: type[T], values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> T:
    """``cls`` (RefreshConfig or ImportConfig) from the settings' ``values`` by field name; a section not in
    ``values`` takes its defaults, the signing keys not given their environment variables. Raises ConfigError
    (the dataclasses' own checks)."""
    hints = typing.get_type_hints(cls)
    top: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = hints[f.name]
        if kind is SigningConfig:
            top[f.name] = signing_config(values, environ)
        elif dataclasses.is_dataclass(kind):
            top[f.name] = kind(**{g.name: values[g.name] for g in dataclasses.fields(kind) if g.name in values})  # type: ignore[operator]
        elif f.name in values:
            top[f.name] = values[f.name]
    if cls is RefreshConfig:
        top["explicit"] = tuple(
            sorted(set(values) & {*TOKENIZER_SETTINGS, *ADJUSTABLE_ARCHITECTURE, *FIXED_ARCHITECTURE})
        )
    return cls(**top)


def signing_config(values: argparse.Namespace | Mapping[str, Any], environ: Mapping[str, str]) -> SigningConfig:
    """The signing settings given (parsed flags, or values by field name), each one not given taken from its
    environment variable (:data:`SIGNING_KEY_ENV`, :data:`TRUSTED_KEYS_ENV`)."""
    picked = given(values, settings(SigningConfig, "signing"))
    if "signing_key" not in picked and environ.get(SIGNING_KEY_ENV):
        picked["signing_key"] = environ[SIGNING_KEY_ENV]
    picked["trusted_keys"] = tuple(picked.get("trusted_keys") or trusted_keys_from(environ))
    return SigningConfig(**picked)


def add_signing_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`SigningConfig` (defaults from the dataclass and the environment: SUPPRESS)."""
    add_settings(p, settings(SigningConfig, "signing"))


#: The architecture ``jobs.versions import`` takes for a model adopted from vectors (a full model keeps its own).
IMPORT_ARCHITECTURE = ("window", "min_count", "negative", "sample", "sg")


def import_settings() -> list[Setting]:
    """The settings of ``jobs.versions import``: :class:`ImportConfig`'s own but ``--store`` (and the signing
    flags), which every subcommand shares, and the adoptable architecture of :class:`TrainingConfig`."""
    own = [s for s in settings(ImportConfig) if s.section == "" and s.name != "store"]
    return own + [s for s in settings(TrainingConfig, "training") if s.name in IMPORT_ARCHITECTURE]


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``jobs.versions import``; their defaults come from :class:`ImportConfig` (SUPPRESS)."""
    own = import_settings()
    add_settings(p, [s for s in own if s.section == ""])
    add_settings(p, [s for s in own if s.section], group="architecture of a model adopted from vectors")


def import_config(namespace: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ImportConfig:
    """The validated ImportConfig for flags parsed by :func:`add_import_arguments`. Raises ConfigError."""
    values = given(namespace, [*settings(ImportConfig), *settings(TrainingConfig, "training")])
    return build(ImportConfig, values, environ)
