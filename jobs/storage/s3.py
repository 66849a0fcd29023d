"""The model store on S3 or an S3-compatible object store (MinIO, Ceph, moto). The only module that imports boto3.

    >>> store = S3Store.from_uri("s3://models-bucket/word2vec")      # doctest: +SKIP
    >>> pointer = store.read_pointer()                                 # Pointer(version, token=<ETag>) or None
    >>> store.put_file("versions/v1/model/vectors.npy", Path("out/model/vectors.npy"))
    >>> store.swap_pointer("v1", expected=pointer)                     # one conditional PutObject

Layout under ``s3://bucket/prefix``: immutable files under ``versions/<version>/`` and the pointer object
``CURRENT``. Moving the pointer is a single ``PutObject`` with ``If-None-Match: *`` (empty store) or
``If-Match: <ETag read at the start of the run>``; S3 answers 412 when another writer got there first, and
that becomes :class:`~jobs.errors.ConflictError`. Every other boto3/botocore failure becomes
:class:`~jobs.errors.StoreError` naming the operation and the ``s3://`` key, never a credential.

Settings are read from the environment when the store is opened (never at import) and travel with the store
when it is pickled to a Ray actor; credentials do not: each process resolves them through the standard AWS
chain (environment, profile, instance or pod role). The client is created on first use.

Environment (standard AWS names first, then this project's knobs)::

    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL   endpoint of an S3-compatible store (e.g. http://minio:9000)
    AWS_REGION / AWS_DEFAULT_REGION          region
    AWS_RETRY_MODE                           standard (default here) | adaptive | legacy
    AWS_MAX_ATTEMPTS                         attempts per request, first included (default here: 5)
    AWS_REQUEST_CHECKSUM_CALCULATION         when_supported (botocore default) | when_required
    AWS_RESPONSE_CHECKSUM_VALIDATION         when_supported (botocore default) | when_required
    EMBEDDING_REFRESH_S3_ADDRESSING_STYLE    auto | path | virtual (unset: botocore's choice, which is path
                                             for an IP endpoint and virtual-hosted for AWS)
    EMBEDDING_REFRESH_S3_CHECKSUM_ALGORITHM  checksum S3 verifies on upload: SHA256 (default), CRC32, CRC32C,
                                             CRC64NVME, SHA1, or none for stores that reject checksum headers
    EMBEDDING_REFRESH_S3_MULTIPART_THRESHOLD files at least this large upload in parts (default 64MiB)
    EMBEDDING_REFRESH_S3_MULTIPART_CHUNKSIZE size of each part, at least 5MiB (default 16MiB)
    EMBEDDING_REFRESH_S3_MAX_CONCURRENCY     parts transferred in parallel per file (default 10)

Sizes accept a plain byte count or a ``KiB``/``MiB``/``GiB`` (or ``KB``/``MB``/``GB``) suffix.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from jobs.errors import ConfigError, ConflictError, StoreError, VersionNotFound
from jobs.storage.base import POINTER, VERSIONS, Pointer, parse_pointer, pointer_body

log = logging.getLogger(__name__)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MIN_PART = 5 * MiB  # S3 rejects smaller parts (except the last)
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
ENV_PREFIX = "EMBEDDING_REFRESH_S3_"
RETRY_MODES = ("standard", "adaptive", "legacy")
ADDRESSING_STYLES = ("auto", "path", "virtual")
CHECKSUM_ALGORITHMS = ("SHA256", "SHA1", "CRC32", "CRC32C", "CRC64NVME")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_BOTO_ERRORS = (ClientError, BotoCoreError, Boto3Error, TransferRetriesExceeded)
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

    def client_config(self) -> botocore.config.Config:
        options: dict[str, Any] = {
            "retries": {"mode": self.retry_mode, "max_attempts": self.max_attempts},
            # one pooled connection per concurrent part, or parts queue behind each other
            "max_pool_connections": max(10, self.max_concurrency),
        }
        if self.addressing_style:
            options["s3"] = {"addressing_style": self.addressing_style}
        return botocore.config.Config(**options)

    def transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
            preferred_transfer_client="classic",  # the same code path with or without awscrt installed
        )


def _parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer") from None


class S3Store:
    """A :class:`~jobs.storage.Store` under ``s3://bucket/prefix``. Picklable; the boto3 client is made lazily."""

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"invalid S3 bucket {bucket!r}; write the store as s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings or S3Settings()
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._lock = threading.Lock()
        self._session: Any = None
        self._client: Any = None

    @classmethod
    def from_uri(cls, uri: str, settings: S3Settings | None = None) -> S3Store:
        """The store for ``s3://bucket/prefix``, with settings read from the environment now."""
        if not uri.startswith("s3://"):
            raise ConfigError(f"{uri!r} is not an s3://bucket/prefix URI")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return cls(bucket, prefix, settings or S3Settings.from_env())

    def __reduce__(self) -> tuple[type, tuple[str, str, S3Settings]]:
        return (type(self), (self.bucket, self.prefix, self.settings))

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use in this process (boto3 sessions are not thread-safe)."""
        with self._lock:
            if self._client is None:
                self._session = boto3.session.Session(region_name=self.settings.region)
                self._client = self._session.client(
                    "s3", endpoint_url=self.settings.endpoint_url, config=self.settings.client_config()
                )
            return self._client

    # -- the Store protocol ------------------------------------------------------------------------------

    def read_pointer(self) -> Pointer | None:
        key = self._key(POINTER)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except _BOTO_ERRORS as exc:
            if _is_missing(exc) or (_is_denied(exc) and not self._listed(key)):
                return None
            raise self._error("read the pointer", key, exc) from exc
        return Pointer(parse_pointer(data, self._uri(key)), token=response["ETag"])

    def _listed(self, key: str) -> bool:
        """Whether ``key`` exists, by listing its own prefix.

        S3 answers a read of a missing key with 403 instead of 404 unless the caller may list the bucket, and a
        least-privilege policy grants ListBucket only under the store's prefix (see infra/aws/iam-policy.json).
        Listing with the key as prefix is allowed by such a policy and settles whether the pointer exists.
        """
        try:
            listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except _BOTO_ERRORS:
            return True  # cannot tell: report the original error
        return any(item["Key"] == key for item in listing.get("Contents", []))

    def swap_pointer(self, version: str, expected: Pointer | None) -> None:
        """Point at ``version`` with one conditional PutObject; raise ConflictError if another writer moved it.

        Whether a failed write happened is settled by re-reading the pointer: a write whose response was lost
        is retried and then fails its own condition, and a write can succeed just before a timeout. If the
        pointer names ``version`` (versions are unique per run), the write was ours and it succeeded.
        """
        key = self._key(POINTER)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.token}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=pointer_body(version),
                ContentType="application/json",
                **condition,
                **self._checksum(),
            )
            return
        except _BOTO_ERRORS as exc:
            failure = exc
        # If-Match on a pointer someone deleted answers 404 on S3: the pointer moved all the same.
        conflict = _is_conflict(failure) or (expected is not None and _is_missing(failure))
        try:
            current = self.read_pointer()
        except StoreError:
            if conflict:
                raise
            raise self._error("move the pointer", key, failure) from failure
        if current is not None and current.version == version:
            log.info(
                "the pointer at %s names %s: the write succeeded though its answer was lost", self._uri(key), version
            )
            return
        if not conflict:
            raise self._error("move the pointer", key, failure) from failure
        raise ConflictError(version, current.version if current else None, expected.version if expected else None)

    def put_file(self, key: str, source: Path) -> None:
        full = self._key(key)
        try:
            with self._transfers() as manager:
                manager.upload(str(source), self.bucket, full, extra_args=self._checksum()).result()
        except _BOTO_ERRORS as exc:
            raise self._error("upload", full, exc) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **self._checksum())
        except _BOTO_ERRORS as exc:
            raise self._error("write", full, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except _BOTO_ERRORS as exc:
            if _is_missing(exc):
                raise VersionNotFound(f"{self._uri(full)} does not exist") from None
            raise self._error("read", full, exc) from exc
        return data

    def get_file(self, key: str, destination: Path) -> None:
        """Download to ``destination`` (through a temporary name, renamed when complete; parts in parallel)."""
        full = self._key(key)
        try:
            with self._transfers() as manager:
                manager.download(self.bucket, full, str(destination)).result()
        except _BOTO_ERRORS as exc:
            if _is_missing(exc):
                raise VersionNotFound(f"{self._uri(full)} does not exist") from None
            raise self._error("download", full, exc) from exc

    def list_versions(self) -> list[str]:
        """Versions with a ``manifest.json``, sorted.

        One flat listing of ``versions/`` rather than a delimited listing plus a HEAD per version: a version
        holds a handful of files, so a page of 1,000 keys covers a hundred versions in one request.
        """
        root = self._key(VERSIONS) + "/"
        found = set()
        for key in self._keys(root, "list versions"):
            version, _, name = key[len(root) :].partition("/")
            if name == "manifest.json":
                found.add(version)
        return sorted(found)

    def delete_version(self, version: str) -> None:
        """Delete every object of ``version``, its manifest first so a half-deleted version is never listed."""
        root = self._key(f"{VERSIONS}/{version}") + "/"
        keys = sorted(self._keys(root, "delete a version"), key=lambda k: not k.endswith("/manifest.json"))
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except _BOTO_ERRORS as exc:
                raise self._error("delete", root, exc) from exc
            failed = response.get("Errors") or []
            if failed:
                first = failed[0]
                raise StoreError(
                    f"cannot delete {len(failed)} object(s) of {self._uri(root)}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}; rerun the deletion"
                )

    # -- helpers -----------------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise StoreError(f"invalid key {key!r} in the store {self.uri}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _uri(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}"

    def _checksum(self) -> dict[str, str]:
        algorithm = self.settings.checksum_algorithm
        return {"ChecksumAlgorithm": algorithm} if algorithm else {}

    def _transfers(self) -> Any:
        return create_transfer_manager(self.client, self.settings.transfer_config())

    def _keys(self, prefix: str, operation: str) -> Iterator[str]:
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except _BOTO_ERRORS as exc:
            raise self._error(operation, prefix, exc) from exc

    def _error(self, operation: str, full_key: str, exc: BaseException) -> StoreError:
        """A StoreError naming the operation, the key and what to do; built from chosen fields only."""
        where = self._uri(full_key)
        cause = exc.last_exception if isinstance(exc, TransferRetriesExceeded) else exc
        if isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            code = str(error.get("Code", "error"))
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = f"{code} (HTTP {status})" + (f": {error['Message']}" if error.get("Message") else "")
            hint = _hint(code, status, self.settings)
        elif isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
            detail = type(cause).__name__
            hint = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance or pod role"
        else:
            detail = f"{type(cause).__name__}: {cause}"
            hint = (
                f"the request failed after {self.settings.max_attempts} attempt(s); check the endpoint and the "
                "network, or raise AWS_MAX_ATTEMPTS"
            )
        return StoreError(self._redact(f"cannot {operation} {where}: {detail}; {hint}"))

    def _redact(self, text: str) -> str:
        """Belt and braces: no message should carry a credential, but make sure none does."""
        credentials = None
        if self._session is not None:
            try:
                credentials = self._session.get_credentials()
            except Exception:  # a broken credential provider must not hide the error being reported
                credentials = None
        for attribute in ("access_key", "secret_key", "token"):
            value = getattr(credentials, attribute, None) if credentials is not None else None
            if isinstance(value, str) and len(value) >= 4 and value in text:
                text = text.replace(value, "***")
        return text


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code")) in _MISSING


def _is_denied(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and (
        str(exc.response.get("Error", {}).get("Code")) in ("AccessDenied", "403", "Forbidden")
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
    )


def _is_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(exc.response.get("Error", {}).get("Code")) in _CONFLICT or status in (409, 412)


def _hint(code: str, status: int | None, settings: S3Settings) -> str:
    if code == "NoSuchBucket":
        return "create the bucket or fix the store URI"
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return "check the AWS credentials in use (AWS_PROFILE, AWS_ACCESS_KEY_ID, the role) and the bucket policy"
    if code in ("InvalidRequest", "NotImplemented", "XAmzContentSHA256Mismatch", "BadDigest") or status == 501:
        return (
            "an S3-compatible store may reject checksums or addressing styles: try "
            f"{ENV_PREFIX}CHECKSUM_ALGORITHM=none, AWS_REQUEST_CHECKSUM_CALCULATION=when_required or "
            f"{ENV_PREFIX}ADDRESSING_STYLE=path"
        )
    if (status is not None and status >= 500) or code in ("SlowDown", "RequestTimeout"):
        return f"the store kept failing after {settings.max_attempts} attempt(s); retry later or raise AWS_MAX_ATTEMPTS"
    return "check the store URI and its permissions"
