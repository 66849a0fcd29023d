"""The config file: the same settings as the flags, as TOML, read through the same field descriptions.

    # infra/refresh.toml
    store = "s3://models-bucket/word2vec/"
    json = true

    [training]
    workers = 16

    [gate]
    similarity_files = ["eval/wordsim353.tsv"]

A section is the RefreshConfig field that holds a config dataclass (``[readiness]``, ``[read]``,
``[tokenizer]``, ``[training]``, ``[lifecycle]``, ``[gate]``, ``[signing]``), the top level RefreshConfig's own
settings; a key is the field's name, exactly as the resolved config records it (``config.json`` beside each
version), not its flag (``similarity_files``, not ``eval-similarity``). A value has the field's type (a size
may also be written as text, ``"256MiB"``; a repeatable flag is a list; ``where`` items are ``"KEY=GLOB"``).
An unknown section or key, or a value of the wrong type, is refused naming it and the file.

Why no library: jsonargparse or pydantic-settings would read this, but each is a heavy dependency (and a second
way to describe a setting) for what the field descriptions and this module do in about a hundred lines; TOML
itself is the standard library's (``tomllib``; ``tomli``, the same code, before Python 3.11).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any

from jobs.config.flags import Setting
from jobs.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TOML_TYPES: dict[Any, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def read(path: str, found: Iterable[Setting]) -> dict[str, Any]:
    """The settings the TOML file ``path`` gives, by field name, checked against ``found``. Raises ConfigError
    naming the file (and the key) when it cannot be read, is no TOML, or holds an unknown key or a wrong type."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}") from None
    return values(data, list(found), path)


def values(data: dict[str, Any], found: list[Setting], source: str) -> dict[str, Any]:
    """The settings in the parsed TOML ``data``, by field name. Raises ConfigError naming ``source``."""
    by_key = {(s.section, s.name): s for s in found}
    sections = {s.section for s in found} - {""}
    items: list[tuple[str, str, Any]] = []
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            items += [(key, name, v) for name, v in value.items()]
        elif key in sections:
            raise ConfigError(f"{source}: {key} is a section; write it as [{key}] with its keys below")
        elif isinstance(value, dict):
            raise ConfigError(f"{source}: unknown section [{key}]; the sections are {', '.join(sorted(sections))}")
        else:
            items.append(("", key, value))
    out: dict[str, Any] = {}
    for section, name, value in items:
        setting = by_key.get((section, name))
        if setting is None:
            raise ConfigError(f"{source}: unknown key {_where(section, name)}{_hint(section, name, found)}")
        out[name] = convert(setting, value, source)
    return out


def convert(s: Setting, value: Any, source: str) -> Any:
    """``value`` as the setting ``s`` holds it. Raises ConfigError naming the key when its type is wrong."""
    kind, _, repeated, choices = s.shape
    if not repeated:
        return _one(s, kind, choices, value, source, "")
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {s.key} must be a list (of {_expected(s, kind)}), got {value!r}")
    converted = [_one(s, kind, choices, item, source, " item") for item in value]
    return tuple(dict.fromkeys(converted) if s.option.unique else converted)


def _one(s: Setting, kind: Any, choices: tuple[Any, ...] | None, value: Any, source: str, what: str) -> Any:
    if isinstance(value, str) and s.option.parse is not None:
        try:
            value = s.option.parse(value)  # read as the flag's text is
        except ConfigError as exc:
            raise ConfigError(f"{source}: {s.key}{what}: {exc}") from None
    elif _is(value, kind):
        value = float(value) if kind is float else value
    else:
        raise ConfigError(f"{source}: {s.key}{what} must be {_expected(s, kind)}, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{source}: {s.key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _is(value: Any, kind: Any) -> bool:
    """Whether TOML's ``value`` is of the field's ``kind`` (an integer is a float too; true is no integer)."""
    return isinstance(value, _TOML_TYPES.get(kind, ())) and (kind is bool) == isinstance(value, bool)


def _expected(s: Setting, kind: Any) -> str:
    if s.option.parse is not None and kind is int:
        return 'an integer or a size like "256MiB"'
    if s.option.parse is not None:
        return f"a string like {s.option.metavar or s.name!r}"
    return _NAMES.get(kind, str(kind))


def _where(section: str, name: str) -> str:
    return f"{name!r} in [{section}]" if section else f"{name!r} at the top level"


def _hint(section: str, name: str, found: list[Setting]) -> str:
    """Where the key the user probably meant lives: a flag's spelling, another section, or a near name."""
    spelled = name.lstrip("-").replace("-", "_")
    for s in found:
        if name.lstrip("-") == s.flag.lstrip("-") or spelled == s.name:
            return f"; {s.flag} is set by {s.key} (keys are field names, as config.json records them)"
    close = difflib.get_close_matches(spelled, [s.name for s in found if s.section == section], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
