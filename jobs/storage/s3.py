"""The model store on S3 or an S3-compatible object store (MinIO, Ceph, moto). The only module that imports boto3.

    store = S3Store.from_uri("s3://models-bucket/word2vec")      # doctest: +SKIP
    pointer = store.read_pointer()                                 # Pointer(version, token=<ETag>) or None
    store.put_file("versions/v1/model/vectors.npy", Path("out/model/vectors.npy"))
    store.swap_pointer("v1", expected=pointer)                     # one conditional PutObject

Layout under ``s3://bucket/prefix``: immutable files under ``versions/<version>/`` and the pointer object
``CURRENT``. Moving the pointer is a single ``PutObject`` with ``If-None-Match: *`` (empty store) or
``If-Match: <ETag read at the start of the run>``; S3 answers 412 when another writer got there first, and
that becomes :class:`~jobs.errors.ConflictError`. Every other boto3/botocore failure becomes
:class:`~jobs.errors.StoreError` naming the operation and the ``s3://`` key, never a credential.

Settings are read from the environment when the store is opened (never at import) and travel with the store
when it is pickled to a Ray actor; credentials do not: each process resolves them through the standard AWS
chain (environment, profile, instance or pod role). The client is created on first use.

The environment it follows (endpoint, region, retries, addressing, checksums, multipart sizes) is parsed once,
for this store and for the partition reader alike, by :class:`shards.s3settings.S3Settings`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from jobs.errors import ConfigError, ConflictError, StoreError, VersionNotFound
from jobs.storage.base import POINTER, VERSIONS, Pointer, parse_pointer, pointer_body, too_large
from jobs.storage.names import MANIFEST, POINTER_LIMIT
from jobs.storage.signed import Signing
from shards.s3settings import ENV_PREFIX, S3Settings

log = logging.getLogger(__name__)

DELETE_BATCH = 1000
PROBES = "probes"  # scratch keys of the conditional-write check, deleted right after
_NO_ETAG = (
    '"00000000000000000000000000000000"'  # an ETag no object has  # the most keys one DeleteObjects request takes
)
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_BOTO_ERRORS = (ClientError, BotoCoreError, Boto3Error, TransferRetriesExceeded)


def client_config(settings: S3Settings) -> botocore.config.Config:
    """botocore's client settings: retries, connection pool, addressing."""
    options: dict[str, Any] = {
        "retries": {"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
        # one pooled connection per concurrent part, or parts queue behind each other
        "max_pool_connections": max(10, settings.max_concurrency),
    }
    if settings.addressing_style:
        options["s3"] = {"addressing_style": settings.addressing_style}
    return botocore.config.Config(**options)


def transfer_config(settings: S3Settings) -> TransferConfig:
    """boto3's multipart transfer settings."""
    return TransferConfig(
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        max_concurrency=settings.max_concurrency,
        preferred_transfer_client="classic",  # the same code path with or without awscrt installed
    )


class S3Store:
    """A :class:`~jobs.storage.Store` under ``s3://bucket/prefix``. Picklable; the boto3 client is made lazily."""

    takes_files_in_place = False  # every file is sent

    def __init__(
        self, bucket: str, prefix: str = "", settings: S3Settings | None = None, signing: Signing = Signing()
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"invalid S3 bucket {bucket!r}; write the store as s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings or S3Settings()
        self.signing = signing
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._lock = threading.Lock()
        self._session: Any = None
        self._client: Any = None
        self._probed = False

    @classmethod
    def from_uri(cls, uri: str, settings: S3Settings | None = None, signing: Signing = Signing()) -> S3Store:
        """The store for ``s3://bucket/prefix``, with settings read from the environment now."""
        if not uri.startswith("s3://"):
            raise ConfigError(f"{uri!r} is not an s3://bucket/prefix URI")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return cls(bucket, prefix, settings or S3Settings.from_env(), signing)

    def __reduce__(self) -> tuple[type, tuple[str, str, S3Settings, Signing]]:
        return (type(self), (self.bucket, self.prefix, self.settings, self.signing))

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use in this process (boto3 sessions are not thread-safe)."""
        with self._lock:
            if self._client is None:
                self._session = boto3.session.Session(region_name=self.settings.region)
                self._client = self._session.client(
                    "s3", endpoint_url=self.settings.endpoint_url, config=client_config(self.settings)
                )
            return self._client

    # -- the Store protocol ------------------------------------------------------------------------------

    def read_pointer(self) -> Pointer | None:
        key = self._key(POINTER)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data = self._bounded(response, key, POINTER_LIMIT)
        except _BOTO_ERRORS as exc:
            if _is_missing(exc) or (_is_denied(exc) and not self._listed(key)):
                return None
            raise self._error("read the pointer", key, exc) from exc
        return Pointer(parse_pointer(data, self._uri(key)), token=response["ETag"], data=data)

    def _bounded(self, response: dict[str, Any], full_key: str, limit: int | None) -> bytes:
        """The body of a GetObject ``response``, refused unread when its length exceeds ``limit``, and never
        more than ``limit`` + 1 bytes read whatever the length said."""
        body = response["Body"]
        if limit is None:
            return bytes(body.read())
        try:
            length = int(response.get("ContentLength") or 0)
            if length > limit:
                raise too_large(self._uri(full_key), length, limit)
            data = bytes(body.read(limit + 1))
            if len(data) > limit:
                raise too_large(self._uri(full_key), len(data), limit)
            return data
        finally:
            body.close()

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

    def swap_pointer(self, version: str, expected: Pointer | None, body: bytes | None = None) -> None:
        """Point at ``version`` with one conditional PutObject; raise ConflictError if another writer moved it.

        Whether a failed write happened is settled by re-reading the pointer: a write whose response was lost
        is retried and then fails its own condition, and a write can succeed just before a timeout. If the
        pointer holds exactly the object written (it names a version unique per run, and a generation), the
        write was ours and it succeeded.
        """
        self.probe()
        key = self._key(POINTER)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.token}
        payload = pointer_body(version) if body is None else body
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=payload,
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
        if current is not None and current.data == payload:
            log.info(
                "the pointer at %s names %s: the write succeeded though its answer was lost", self._uri(key), version
            )
            return
        if not conflict:
            raise self._error("move the pointer", key, failure) from failure
        raise ConflictError(version, current.version if current else None, expected.version if expected else None)

    def probe(self) -> None:
        """Check, once per process, that the store honours conditional writes; raise StoreError if it does not.

        Some S3-compatible servers accept ``If-None-Match`` / ``If-Match`` and ignore them, which would turn the
        pointer swap into a blind overwrite. On a scratch key under ``probes/``: a first write with
        ``If-None-Match: *`` creates it; a second, and one with ``If-Match`` on an ETag it never had, must both
        be refused with 412. The scratch key is deleted afterwards (best effort).
        """
        if self._probed:
            return
        key = self._key(f"{PROBES}/conditional-write-{secrets.token_hex(8)}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"probe", IfNoneMatch="*", **self._checksum())
            ignored = [
                header
                for header, condition in (
                    ("If-None-Match: *", {"IfNoneMatch": "*"}),
                    ("If-Match", {"IfMatch": _NO_ETAG}),
                )
                if not self._refused(key, condition)
            ]
        except _BOTO_ERRORS as exc:
            raise self._error("check conditional writes on", key, exc) from exc
        finally:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except _BOTO_ERRORS as exc:
                log.warning("could not remove the probe %s: %s", self._uri(key), type(exc).__name__)
        if ignored:
            raise StoreError(
                f"the store {self.uri} ignores conditional writes: a PutObject with {' and '.join(ignored)} that "
                "had to fail with 412 was accepted, so moving the pointer would be a blind overwrite and two "
                "refreshes could each lose the other's version. Nothing was published. Use a store that implements "
                "conditional PutObject (If-None-Match and If-Match; AWS S3 does, S3-compatible servers only in "
                "recent releases), and check that no proxy or gateway in front of it drops those headers."
            )
        self._probed = True

    def _refused(self, key: str, condition: dict[str, str]) -> bool:
        """Whether a write under ``condition`` that must fail was refused with 412 (False: it was accepted)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"probe", **condition, **self._checksum())
        except ClientError as exc:
            if _is_conflict(exc):
                return True
            raise
        return False

    def put_file(self, key: str, source: Path, final: bool = False) -> None:
        del final  # the bytes cross the network whatever the caller does with the file next
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

    def get_bytes(self, key: str, limit: int | None = None) -> bytes:
        full = self._key(key)
        try:
            data = self._bounded(self.client.get_object(Bucket=self.bucket, Key=full), full, limit)
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

    def copy(self, source: str, key: str) -> None:
        """A server-side copy (in parts for large objects); the bytes never leave the store."""
        origin, full = self._key(source), self._key(key)
        try:
            with self._transfers() as manager:
                origin_object = {"Bucket": self.bucket, "Key": origin}
                manager.copy(origin_object, self.bucket, full, extra_args=self._checksum()).result()
        except _BOTO_ERRORS as exc:
            if _is_missing(exc):
                raise VersionNotFound(f"{self._uri(origin)} does not exist") from None
            raise self._error("copy to", full, exc) from exc

    def list_versions(self) -> list[str]:
        """Versions with a ``manifest.json``, sorted.

        One flat listing of ``versions/`` rather than a delimited listing plus a HEAD per version: a version
        holds a handful of files, so a page of 1,000 keys covers a hundred versions in one request.
        """
        root = self._key(VERSIONS) + "/"
        found = set()
        for key in self._keys(root, "list versions"):
            version, _, name = key[len(root) :].partition("/")
            if name == MANIFEST:
                found.add(version)
        return sorted(found)

    def list_incomplete(self) -> dict[str, float]:
        """Versions without a ``manifest.json``, from the same flat listing as :meth:`list_versions`."""
        root = self._key(VERSIONS) + "/"
        newest: dict[str, float] = {}
        complete = set()
        for item in self._objects(root, "list versions"):
            version, _, name = item["Key"][len(root) :].partition("/")
            if name == MANIFEST:
                complete.add(version)
            newest[version] = max(newest.get(version, 0.0), item["LastModified"].timestamp())
        return {v: t for v, t in newest.items() if v not in complete}

    def list_keys(self, folder: str, limit: int | None = None) -> list[str]:
        """S3 lists keys in ascending UTF-8 order, so the first ``limit`` come from the first request(s) alone."""
        root = self._key(folder) + "/"
        start = len(self.prefix) + 1 if self.prefix else 0
        return sorted(key[start:] for key in self._keys(root, f"list {folder}", limit))

    def delete_keys(self, keys: list[str]) -> None:
        self._delete([self._key(key) for key in keys])

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)  # S3 answers 204 for a missing key too
        except _BOTO_ERRORS as exc:
            raise self._error("delete", full, exc) from exc

    def delete_version(self, version: str) -> None:
        """Delete every object of ``version``, its manifest first so a half-deleted version is never listed."""
        root = self._key(f"{VERSIONS}/{version}") + "/"
        keys = sorted(self._keys(root, "delete a version"), key=lambda k: not k.endswith(f"/{MANIFEST}"))
        self._delete(keys, root)

    def _delete(self, full_keys: list[str], root: str | None = None) -> None:
        """DeleteObjects in batches, in the order given. Raises StoreError naming ``root`` (else the batch's
        first key) on any failure."""
        for start in range(0, len(full_keys), DELETE_BATCH):
            batch = full_keys[start : start + DELETE_BATCH]
            where = root or batch[0]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except _BOTO_ERRORS as exc:
                raise self._error("delete", where, exc) from exc
            failed = response.get("Errors") or []
            if failed:
                first = failed[0]
                raise StoreError(
                    f"cannot delete {len(failed)} object(s) of {self._uri(where)}, e.g. {first.get('Key')}: "
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
        return create_transfer_manager(self.client, transfer_config(self.settings))

    def _keys(self, prefix: str, operation: str, limit: int | None = None) -> Iterator[str]:
        for item in self._objects(prefix, operation, limit):
            yield item["Key"]

    def _objects(self, prefix: str, operation: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The objects under ``prefix`` in S3's (ascending) order; with ``limit``, the first ``limit`` only, in
        as many requests as those take (``MaxItems``: the paginator stops asking once it has them)."""
        pages = {"PaginationConfig": {"MaxItems": limit, "PageSize": min(limit, 1000)}} if limit else {}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **pages):
                yield from page.get("Contents", [])
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
