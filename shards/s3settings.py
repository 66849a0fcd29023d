"""How the project reaches S3: one set of settings, parsed once from the standard AWS environment and this
project's ``EMBEDDING_REFRESH_S3_*`` knobs, used by the partition reader (pyarrow) and by the model store
(boto3, in :mod:`jobs.storage.s3`), so both follow the same endpoint, addressing style and retries.

    >>> settings = S3Settings.from_env({"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_MAX_ATTEMPTS": "4"})
    >>> settings.pyarrow_options()["endpoint_override"], settings.max_attempts
    ('minio:9000', 4)

Environment (standard AWS names first, then this project's knobs)::

    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL   endpoint of an S3-compatible store (e.g. http://minio:9000)
    AWS_REGION / AWS_DEFAULT_REGION          region
    AWS_RETRY_MODE                           standard (default here) | adaptive | legacy (boto3 only)
    AWS_MAX_ATTEMPTS                         attempts per request, first included (default here: 5)
    AWS_REQUEST_CHECKSUM_CALCULATION         when_supported (botocore default) | when_required
    AWS_RESPONSE_CHECKSUM_VALIDATION         when_supported (botocore default) | when_required
    EMBEDDING_REFRESH_S3_ADDRESSING_STYLE    auto | path | virtual (unset: botocore's choice, which is path
                                             for an IP endpoint and virtual-hosted for AWS; pyarrow: path)
    EMBEDDING_REFRESH_S3_CHECKSUM_ALGORITHM  checksum S3 verifies on upload: SHA256 (default), CRC32, CRC32C,
                                             CRC64NVME, SHA1, or none for stores that reject checksum headers
    EMBEDDING_REFRESH_S3_MULTIPART_THRESHOLD files at least this large upload in parts (default 64MiB)
    EMBEDDING_REFRESH_S3_MULTIPART_CHUNKSIZE size of each part, at least 5MiB (default 16MiB)
    EMBEDDING_REFRESH_S3_MAX_CONCURRENCY     parts transferred in parallel per file (default 10)

Sizes accept a plain byte count or a ``KiB``/``MiB``/``GiB`` (or ``KB``/``MB``/``GB``) suffix. No credential is
part of the settings: each process resolves those through the AWS credential chain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shards.errors import ConfigError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MIN_PART = 5 * MiB  # S3 rejects smaller parts (except the last)
ENV_PREFIX = "EMBEDDING_REFRESH_S3_"
RETRY_MODES = ("standard", "adaptive", "legacy")
ADDRESSING_STYLES = ("auto", "path", "virtual")
CHECKSUM_ALGORITHMS = ("SHA256", "SHA1", "CRC32", "CRC32C", "CRC64NVME")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B)?\s*$", re.IGNORECASE)
_UNITS = {"k": KiB, "m": MiB, "g": GiB}


def parse_size(text: str, name: str) -> int:
    """``"64MiB"`` → 67108864. Raises ConfigError naming the setting when the text is not a size."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{name}={text!r} is not a size; write bytes or e.g. 64MiB")
    number, unit = match.groups()
    return int(number) * (_UNITS[unit[0].lower()] if unit else 1)


@dataclass(frozen=True)
class S3Settings:
    """How to reach the store and move bytes. No credentials: those come from the AWS chain in each process."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str | None = None
    retry_mode: str = "standard"
    max_attempts: int = 5
    checksum_algorithm: str | None = "SHA256"
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    max_concurrency: int = 10

    def __post_init__(self) -> None:
        if self.addressing_style not in (None, *ADDRESSING_STYLES):
            raise ConfigError(
                f"{ENV_PREFIX}ADDRESSING_STYLE={self.addressing_style!r}; choose {', '.join(ADDRESSING_STYLES)}"
            )
        if self.retry_mode not in RETRY_MODES:
            raise ConfigError(f"AWS_RETRY_MODE={self.retry_mode!r}; choose {', '.join(RETRY_MODES)}")
        if self.max_attempts < 1:
            raise ConfigError(f"AWS_MAX_ATTEMPTS={self.max_attempts}; it counts the first attempt, so use 1 or more")
        if self.checksum_algorithm not in (None, *CHECKSUM_ALGORITHMS):
            raise ConfigError(
                f"{ENV_PREFIX}CHECKSUM_ALGORITHM={self.checksum_algorithm!r}; "
                f"choose {', '.join(CHECKSUM_ALGORITHMS)} or none"
            )
        if self.multipart_chunksize < MIN_PART:
            raise ConfigError(
                f"{ENV_PREFIX}MULTIPART_CHUNKSIZE={self.multipart_chunksize} is below S3's 5MiB minimum part size"
            )
        if self.multipart_threshold < 1 or self.max_concurrency < 1:
            raise ConfigError(f"{ENV_PREFIX}MULTIPART_THRESHOLD and {ENV_PREFIX}MAX_CONCURRENCY must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Settings from ``environ`` (default: ``os.environ``); unset variables keep the defaults above."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            "addressing_style": (env.get(f"{ENV_PREFIX}ADDRESSING_STYLE") or "").lower() or None,
        }
        if env.get("AWS_RETRY_MODE"):
            values["retry_mode"] = env["AWS_RETRY_MODE"].lower()
        if env.get("AWS_MAX_ATTEMPTS"):
            values["max_attempts"] = _parse_int(env["AWS_MAX_ATTEMPTS"], "AWS_MAX_ATTEMPTS")
        if env.get(f"{ENV_PREFIX}CHECKSUM_ALGORITHM"):
            algorithm = env[f"{ENV_PREFIX}CHECKSUM_ALGORITHM"].upper()
            values["checksum_algorithm"] = None if algorithm == "NONE" else algorithm
        for name in ("multipart_threshold", "multipart_chunksize"):
            variable = f"{ENV_PREFIX}{name.upper()}"
            if env.get(variable):
                values[name] = parse_size(env[variable], variable)
        if env.get(f"{ENV_PREFIX}MAX_CONCURRENCY"):
            variable = f"{ENV_PREFIX}MAX_CONCURRENCY"
            values["max_concurrency"] = _parse_int(env[variable], variable)
        return cls(**values)

    def pyarrow_options(self) -> dict[str, Any]:
        """Keyword arguments of ``pyarrow.fs.S3FileSystem`` for these settings."""
        options: dict[str, Any] = {}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        if self.region:
            options["region"] = self.region
        # pyarrow addresses buckets path-style unless told otherwise
        if self.addressing_style == "virtual":
            options["force_virtual_addressing"] = True
        return options


def _parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer") from None
