"""The refresh's configuration: typed, frozen, validated once, and saved with every version.

Settings come from a TOML config file (``--config``, :mod:`jobs.config.file`) and from command-line flags,
a flag overriding the file, resolved in exactly one place (:func:`from_args`). Each setting is described once,
beside its dataclass field (:mod:`jobs.config.run` and the sections it holds: :mod:`jobs.config.training`,
:mod:`jobs.config.gate`, :mod:`jobs.config.signing`, and ``shards``' reading and tokenizing settings), and the
flags (:mod:`jobs.config.flags`) and the file's keys are generated from those descriptions. Nothing is read
from the environment or the disk at import time; ``RAY_ADDRESS`` is consulted only when Ray is started, and
the signing keys' environment variables (:data:`SIGNING_KEY_ENV`, :data:`TRUSTED_KEYS_ENV`) when the config
is resolved, for the keys not given.

    >>> config = from_args(["--input", "data/sample", "--store", "models", "--model", "fasttext"])
    >>> config.training.model, config.tokenizer.lowercase
    ('fasttext', True)
    >>> to_dict(config)["training"]["vector_size"]
    100
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jobs.config import file
from jobs.config.flags import (
    CONFIG_DEST,
    add_import_arguments,
    add_signing_arguments,
    build,
    given,
    import_config,
    parser,
    settings,
    signing_config,
)
from jobs.config.gate import GateConfig
from jobs.config.run import IMPORT_KINDS, LOG_FORMATS, ImportConfig, RefreshConfig, check_date, no_credentials, to_dict
from jobs.config.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, SigningConfig, trusted_keys_from
from jobs.config.training import (
    ADJUSTABLE_ARCHITECTURE,
    FIXED_ARCHITECTURE,
    NEW_LINEAGE,
    TOKENIZER_SETTINGS,
    ModelKind,
    TrainingConfig,
    UpkeepConfig,
)

__all__ = [
    "ADJUSTABLE_ARCHITECTURE",
    "FIXED_ARCHITECTURE",
    "IMPORT_KINDS",
    "LOG_FORMATS",
    "NEW_LINEAGE",
    "SIGNING_KEY_ENV",
    "TOKENIZER_SETTINGS",
    "TRUSTED_KEYS_ENV",
    "GateConfig",
    "ImportConfig",
    "ModelKind",
    "RefreshConfig",
    "SigningConfig",
    "TrainingConfig",
    "UpkeepConfig",
    "add_import_arguments",
    "add_signing_arguments",
    "check_date",
    "from_args",
    "import_config",
    "no_credentials",
    "parser",
    "signing_config",
    "to_dict",
    "trusted_keys_from",
]


def from_args(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> RefreshConfig:
    """The validated RefreshConfig of the flags ``argv``, over the config file ``--config`` names, over the
    dataclasses' defaults (and, for signing settings given neither way, ``environ``). Raises ConfigError (an
    unknown key, a wrong type, a value out of range); exits on --help and on an unknown flag."""
    p = parser()
    namespace = p.parse_args(argv)
    found = list(settings(RefreshConfig))
    values = given(namespace, found)
    path = getattr(namespace, CONFIG_DEST, None)
    if path is not None:
        values = {**file.read(path, found), **values}
    missing = [s.flag for s in found if s.required and s.name not in values]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    return build(RefreshConfig, values, environ)
