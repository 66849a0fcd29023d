"""Signed versions' settings (:class:`SigningConfig`, docs/signing.md): the key that signs, the keys trusted,
and the environment variables that name their files when no flag or config file key does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from jobs.errors import ConfigError
from shards.options import option

SIGNING_KEY_ENV = "EMBEDDING_REFRESH_SIGNING_KEY"  # the FILE holding the private key, never the key
TRUSTED_KEYS_ENV = "EMBEDDING_REFRESH_TRUSTED_KEYS"  # public key FILES, separated like PATH (os.pathsep)


@dataclass(frozen=True)
class SigningConfig:
    """Signed versions (docs/signing.md): the FILE holding the key that signs what this process writes, the
    files of the public keys it trusts (none: nothing is verified), whether a pointer older than one already
    seen is accepted, and where the newest pointer seen of each store is remembered (None: the cache's)."""

    signing_key: str | None = option(
        None,
        "sign each manifest and pointer written with the Ed25519 private key in FILE (default: the file "
        f"${SIGNING_KEY_ENV} names)",
        metavar="FILE",
    )
    trusted_keys: tuple[str, ...] = option(
        (),
        "read only manifests and pointers signed by a public key in FILE; repeatable (default: the files "
        f"${TRUSTED_KEYS_ENV} names, separated by '{os.pathsep}'; none: nothing is verified)",
        flag="--trusted-key",
        metavar="FILE",
    )
    allow_rollback: bool = option(
        False, "accept a pointer older than one this host has already seen (a store restored on purpose)"
    )
    seen_dir: str | None = option(
        None,
        "where the newest pointer seen of each store is remembered (default: seen/ in the reader's cache)",
        metavar="DIR",
    )

    def __post_init__(self) -> None:
        if self.signing_key == "":
            raise ConfigError("--signing-key names a file; got an empty path")


def trusted_keys_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trusted key files :data:`TRUSTED_KEYS_ENV` names."""
    return tuple(path for path in environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path)
