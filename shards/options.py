"""A config dataclass field that describes itself: its default, its flag, its help text and its help section.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Example:
    ...     batch_rows: int = option(65_536, "rows read and tokenized at once")
    >>> described(Example.__dataclass_fields__["batch_rows"]).flag_for("batch_rows")
    '--batch-rows'

The command line (``jobs.config.flags``) and the config file (``jobs.config.file``) are both generated from
these descriptions, so a field cannot exist without a flag and a file key that reach it, and its default is
written once, in the dataclass. A field that is no setting (worked out from others, or fixed by the code) says
so with :func:`derived`. This module lives in ``shards`` because ``shards``' own config dataclasses
(:class:`~shards.tokenize.TokenizerConfig`, ...) describe their fields with it, and ``shards`` may not import
``jobs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_KEY = "option"


@dataclass(frozen=True)
class Option:
    """How one field is set. ``flag``: its command-line flag (default: ``--`` and the field's name with
    dashes); ``group``: the ``--help`` section it is listed in (default: its dataclass's); ``parse``: turns a
    flag's text (and a config file's string) into the value (default: the field's type); ``choices``: the
    values allowed; ``const``: the value of the flag given without one (the flag's value is then optional);
    ``unique``: a repeated flag keeps each value once."""

    help: str
    flag: str | None = None
    group: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    const: Any = None
    unique: bool = False

    def flag_for(self, name: str) -> str:
        """The flag of the field called ``name``."""
        return self.flag or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Derived:
    """A field that is no setting: ``why`` it has neither a flag nor a config file key."""

    why: str


def option(default: Any = dataclasses.MISSING, help: str = "", **described: Any) -> Any:
    """A dataclass field with ``default`` (none: a required setting), set by a flag and a config file key as
    ``described`` (:class:`Option`'s fields)."""
    return dataclasses.field(default=default, metadata={_KEY: Option(help=help, **described)})


def derived(default: Any, why: str) -> Any:
    """A dataclass field that no flag and no file key sets, and ``why``."""
    return dataclasses.field(default=default, metadata={_KEY: Derived(why)})


def described(f: dataclasses.Field[Any]) -> Option | Derived | None:
    """How the field ``f`` is set: its :class:`Option`, its :class:`Derived` reason, or None if it does not say."""
    found = f.metadata.get(_KEY)
    return found if isinstance(found, Option | Derived) else None
