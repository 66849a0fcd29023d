"""Ed25519 keys for signed versions: make them, load them from files, sign bytes, verify bytes.

This module knows keys and bytes, nothing about stores; what is signed, and where the signatures live, is
:mod:`jobs.storage.signed` (and docs/signing.md for users).

    >>> key = generate(Path("keys/signing.pem"))            # doctest: +SKIP
    >>> key = load_signing_key("keys/signing.pem")           # doctest: +SKIP
    >>> signature = key.sign(b"bytes")                        # doctest: +SKIP
    >>> trusted = load_trusted_keys(["keys/signing.pem.pub"])   # doctest: +SKIP
    >>> trusted.verify(b"bytes", signature, "the manifest of v1 in s3://models")   # doctest: +SKIP

Keys are always named by a FILE (``--signing-key``, ``--trusted-key``, or the environment variables that name
files); a private key is never a flag's value, never logged, never written to a store. A private key file is
PEM (PKCS#8, as :func:`generate` and ``openssl genpkey -algorithm ed25519`` write it) or the 32 raw bytes; a
public key file is PEM (one or more ``PUBLIC KEY`` blocks) or the 32 raw bytes. A key's id is the first 16
hex digits of the SHA-256 of its 32-byte public key: a signature records the id of the key that made it, so a
reader that trusts several keys (during a rotation) checks it with the right one, and an error can name it.

Ed25519 through ``cryptography`` (PyCA: maintained by the Python Cryptographic Authority, wheels for every
platform the project runs on, already installed beside moto and google-auth); PyNaCl would add libsodium and a
second native dependency for the same two calls. It is imported on first use, and installed by the
``[signing]`` extra (``[job]`` includes it): a reader that trusts no key runs without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from jobs.errors import ConfigError, SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_KEY_FILE = 64 << 10  # a key file is a few hundred bytes; anything larger is not one
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


def _crypto() -> Any:
    """cryptography's Ed25519 and key serialization, imported on first use: only signing, and reading with
    trusted keys, need it, so a reader that trusts no key runs without it. Raises ConfigError naming the
    extra that installs it."""
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ConfigError(
            f"signed versions need the cryptography package, which this installation lacks ({exc}): "
            "pip install 'embedding-refresh[signing]' (the refresh job's [job] extra includes it)"
        ) from exc
    return SimpleNamespace(
        InvalidSignature=exceptions.InvalidSignature,
        UnsupportedAlgorithm=exceptions.UnsupportedAlgorithm,
        serialization=serialization,
        Ed25519PrivateKey=ed25519.Ed25519PrivateKey,
        Ed25519PublicKey=ed25519.Ed25519PublicKey,
    )


def key_id(public: bytes) -> str:
    """The id of a raw 32-byte public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class Signature:
    """A signature and the id of the key that made it; stored as JSON (:meth:`to_json`)."""

    key_id: str
    value: bytes

    def to_json(self) -> dict[str, str]:
        return {"algorithm": ALGORITHM, "key_id": self.key_id, "signature": base64.b64encode(self.value).decode()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Signature:
        """The signature recorded as ``data`` (parsed JSON); raises SignatureError naming ``where`` when it is
        not exactly the form :meth:`to_json` writes."""
        if not isinstance(data, dict) or set(data) != {"algorithm", "key_id", "signature"}:
            raise SignatureError(f"{where}: the signature is not a JSON object with algorithm, key_id, signature")
        if data["algorithm"] != ALGORITHM:
            raise SignatureError(f"{where}: signature algorithm {str(data['algorithm'])[:20]!r} is not {ALGORITHM}")
        kid, text = data["key_id"], data["signature"]
        if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid) or not isinstance(text, str) or len(text) > 100:
            raise SignatureError(f"{where}: the signature's key_id or value is malformed")
        try:
            value = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise SignatureError(f"{where}: the signature by key {kid} is not base64") from None
        if len(value) != SIGNATURE_BYTES:
            raise SignatureError(f"{where}: the signature by key {kid} is not {SIGNATURE_BYTES} bytes")
        return cls(kid, value)


class SigningKey:
    """An Ed25519 private key, loaded in this process. It cannot be pickled, so it never travels to a Ray
    worker or into a store with the objects it signs."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        serialization = _crypto().serialization
        self.public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public)

    def sign(self, message: bytes) -> Signature:
        return Signature(self.key_id, self._private.sign(message))

    def public_pem(self) -> bytes:
        serialization = _crypto().serialization
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a signing key is not pickled: it stays in the process that loaded it")


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a reader accepts signatures from, by key id (raw 32-byte keys: picklable, so a store
    carries them to the trainer's node)."""

    keys: Mapping[str, bytes]

    @property
    def ids(self) -> list[str]:
        return sorted(self.keys)

    def verify(self, message: bytes, signature: Signature, what: str) -> None:
        """Check that ``signature`` is a trusted key's signature of ``message``. Raises SignatureError naming
        ``what`` and the key id the signature records."""
        public = self.keys.get(signature.key_id)
        if public is None:
            raise SignatureError(
                f"{what} is signed by key {signature.key_id}, which is not trusted here (trusted: "
                f"{', '.join(self.ids)}); refusing it. If that key is yours, add its public key with --trusted-key"
            )
        crypto = _crypto()
        try:
            crypto.Ed25519PublicKey.from_public_bytes(public).verify(signature.value, message)
        except crypto.InvalidSignature:
            raise SignatureError(
                f"{what}: the signature by key {signature.key_id} does not match: it was changed after it was "
                "signed, or the signature is forged; refusing it"
            ) from None


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The Ed25519 private key in the file ``path`` (PEM PKCS#8, unencrypted, or 32 raw bytes). Raises
    ConfigError naming the file, never its content."""
    data = _read_key_file(path, "signing key")
    crypto = _crypto()
    if os.name == "posix" and os.stat(path).st_mode & 0o077:
        log.warning("the signing key %s can be read by other users; restrict it (chmod 600)", path)
    if len(data) == RAW_KEY_BYTES:
        return SigningKey(crypto.Ed25519PrivateKey.from_private_bytes(data))
    try:
        private = crypto.serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, crypto.UnsupportedAlgorithm):
        raise ConfigError(
            f"the signing key {path} is not an unencrypted PEM Ed25519 private key or 32 raw bytes "
            "(make one with `python -m jobs.versions keygen --out FILE`)"
        ) from None
    if not isinstance(private, crypto.Ed25519PrivateKey):
        raise ConfigError(f"the signing key {path} is a {type(private).__name__}, not an Ed25519 key")
    return SigningKey(private)


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> TrustedKeys:
    """The public keys in the files ``paths`` (each PEM with one or more ``PUBLIC KEY`` blocks, or 32 raw
    bytes). Raises ConfigError naming a file that holds no public key, or a private one."""
    keys: dict[str, bytes] = {}
    for path in paths:
        for public in _public_keys(path):
            keys[key_id(public)] = public
    if not keys:
        raise ConfigError("no trusted key given")
    return TrustedKeys(keys)


def _public_keys(path: str | os.PathLike[str]) -> list[bytes]:
    data = _read_key_file(path, "trusted key")
    crypto = _crypto()  # even for raw keys: a reader that trusts keys checks signatures with it
    if len(data) == RAW_KEY_BYTES and not data.startswith(b"-----"):
        return [data]
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
    if any(b"PRIVATE KEY" in block.split(b"\n", 1)[0] for block in blocks):
        raise ConfigError(f"the trusted key file {path} holds a PRIVATE key; trust its public key (the .pub file)")
    found = []
    for block in blocks:
        try:
            public = crypto.serialization.load_pem_public_key(block)
        except (ValueError, crypto.UnsupportedAlgorithm):
            raise ConfigError(f"the trusted key file {path} holds a PEM block that is not a public key") from None
        if not isinstance(public, crypto.Ed25519PublicKey):
            raise ConfigError(f"the trusted key file {path} holds a {type(public).__name__}, not an Ed25519 key")
        raw = crypto.serialization.Encoding.Raw
        found.append(public.public_bytes(raw, crypto.serialization.PublicFormat.Raw))
    if not found:
        raise ConfigError(f"the trusted key file {path} holds no PEM public key and is not 32 raw bytes")
    return found


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    text = os.fspath(path)
    if isinstance(text, str) and ("\n" in text or "-----" in text or len(text) > 4096):
        # Never echo it: a key pasted where its file's path belongs would end up in the error, and the logs.
        raise ConfigError(f"the {what} must be given as the path of a file; the value given is not one (not shown)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f"the {what} file {path} is larger than {MAX_KEY_FILE} bytes; it is not a key")
    return data


def generate(out: Path) -> SigningKey:
    """A new key pair: the private key written to ``out`` (PEM, mode 0600), the public key to ``out.pub``.
    Neither file may exist already (a key is never overwritten). Raises ConfigError."""
    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists():
            raise ConfigError(f"{path} exists; refusing to overwrite a key")
    crypto = _crypto()
    key = SigningKey(crypto.Ed25519PrivateKey.generate())
    serialization = crypto.serialization
    private_pem = key._private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(out, private_pem, 0o600)
    _write_new(public_path, key.public_pem(), 0o644)
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never readable by others, even for an instant)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
