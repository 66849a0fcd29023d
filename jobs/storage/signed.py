"""Signed versions: what is signed, where each signature lives, and what a reader checks (docs/signing.md).

A store carries a :class:`Signing`: the key this process signs with, the keys it trusts, and where it
remembers the newest pointer it has seen. :mod:`jobs.storage.publish` applies it on every write and read.
With a signing key, every manifest and every pointer this process writes is signed:

    versions/<v>/manifest.json.sig   {"algorithm": "ed25519", "key_id": "…", "signature": "<base64>"} over
                                     "embedding-refresh manifest v1\\n" + JSON(<v>) + "\\n" + the manifest's
                                     bytes; written before the manifest, so no complete version lacks it
    CURRENT                          {"version", "manifest", "generation", "manifest_sha256", "signature"}:
                                     the signature covers the other fields (canonical JSON) and lives in the
                                     pointer object itself, so one write replaces pointer and signature
                                     together and no reader sees a new pointer with an old signature

The generation only grows: each pointer's is the larger of the previous one's plus one and the time in
milliseconds, so a replayed old pointer is lower than one a reader has seen, and a pointer written after a
restore is higher than any written before it. Readers that predate signing read ``version`` and ignore the rest.

With trusted keys, a reader accepts a manifest only with a trusted key's signature of exactly its bytes for
exactly its version name, and a pointer only with a trusted key's signature, a generation not below the
highest this host has seen for the store (``<seen>/<SHA-256 of the store URI>.json``; an equal one must name
the same version), and a manifest SHA-256 that matches the manifest it names. Anything else raises
SignatureError naming the store, the version and the key id. Without trusted keys nothing is checked.

    store = open_store("models", Signing(key=load_signing_key("k.pem"), trusted=load_trusted_keys(["k.pem.pub"])))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.errors import ConfigError, IntegrityError, SignatureError, VersionNotFound
from jobs.storage.base import POINTER, VERSIONS, Pointer, pointer_body
from jobs.storage.locks import FileLock
from jobs.storage.names import MANIFEST, MANIFEST_LIMIT
from jobs.storage.signing import Signature, SigningKey, TrustedKeys, load_signing_key, load_trusted_keys

if TYPE_CHECKING:
    from jobs.config import SigningConfig
    from jobs.storage.base import Store

log = logging.getLogger(__name__)

MANIFEST_CONTEXT = b"embedding-refresh manifest v1\n"  # a manifest's signature can never pass for a pointer's
POINTER_CONTEXT = b"embedding-refresh pointer v1\n"
SIGNATURE_SUFFIX = ".sig"
MAX_SIGNATURE_FILE = 4096  # the JSON is under 200 bytes
MAX_GENERATION = 2**53 - 1  # the largest integer every JSON reader holds exactly
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Signing:
    """What this process signs with and trusts, for one store. The default signs nothing and checks nothing."""

    key: SigningKey | None = None  # signs every manifest and pointer this process writes
    trusted: TrustedKeys | None = None  # None: nothing is verified (a store from before signing)
    seen: Path | None = None  # where the newest pointer seen per store is remembered (None: not remembered)
    allow_rollback: bool = False  # accept a pointer older than one already seen, and remember it instead

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # The private key stays in the process that loaded it: a store sent to the trainer's node only verifies.
        return (Signing, (None, self.trusted, self.seen, self.allow_rollback))


def load(config: SigningConfig, cache: Path) -> Signing:
    """The Signing that ``config`` names: keys read from their files now; the newest pointers seen remembered
    under ``config.seen_dir``, else ``cache/seen``. Raises ConfigError (a key file, or a signing key that the
    trusted keys leave out: readers trusting the same keys would refuse all it signs)."""
    key = load_signing_key(config.signing_key) if config.signing_key else None
    trusted = load_trusted_keys(config.trusted_keys) if config.trusted_keys else None
    if key is not None and trusted is not None and key.key_id not in trusted.keys:
        raise ConfigError(
            f"the signing key {key.key_id} is not among the trusted keys ({', '.join(trusted.ids)}): what this "
            "process signs would be refused; trust its public key first (see key rotation in docs/signing.md)"
        )
    if key is not None and trusted is None:
        log.warning("signing with key %s, but no key is trusted: nothing read from the store is verified", key.key_id)
    seen = Path(config.seen_dir) if config.seen_dir else cache / "seen"
    return Signing(key, trusted, seen if trusted is not None else None, config.allow_rollback)


# -- manifests ------------------------------------------------------------------------------------------------


def signature_key(version: str) -> str:
    return f"{VERSIONS}/{version}/{MANIFEST}{SIGNATURE_SUFFIX}"


def _manifest_message(version: str, body: bytes) -> bytes:
    return MANIFEST_CONTEXT + json.dumps(version).encode() + b"\n" + body  # JSON: a name cannot hold a newline


def sign_manifest(store: Store, version: str, body: bytes) -> None:
    """Write the signature of ``version``'s manifest ``body`` beside it, when the store signs."""
    key = store.signing.key
    if key is not None:
        signature = key.sign(_manifest_message(version, body))
        store.put_bytes(signature_key(version), json.dumps(signature.to_json()).encode())


def check_manifest(store: Store, version: str, body: bytes, pointer: Pointer | None = None) -> None:
    """Check that ``body``, the manifest of ``version``, is signed by a trusted key and, if ``pointer`` named
    it, is the manifest the pointer records. Raises SignatureError; nothing to check without trusted keys."""
    trusted = store.signing.trusted
    if trusted is None:
        return
    where = f"the manifest of version {version} in {store.uri}"
    try:
        raw = store.get_bytes(signature_key(version), limit=MAX_SIGNATURE_FILE)
    except IntegrityError as exc:  # larger than any signature
        raise SignatureError(f"{where}: {exc}") from None
    except VersionNotFound:
        raise SignatureError(
            f"{where} is not signed (no {MANIFEST}{SIGNATURE_SUFFIX}), and only versions signed by a trusted key "
            f"({', '.join(trusted.ids)}) are read here; refusing it. {_sign_hint(version, store.uri)}"
        ) from None
    trusted.verify(_manifest_message(version, body), _signature(raw, where), where)
    if pointer is not None:
        recorded = parse_pointer(pointer.data, f"the pointer {store.uri}/{POINTER}").manifest_sha256
        if recorded is not None and recorded != hashlib.sha256(body).hexdigest():
            raise SignatureError(f"{where} is not the manifest its pointer records (SHA-256 {recorded[:12]}…)")


def signer(store: Store, version: str) -> str | None:
    """The key id the signature beside ``version``'s manifest names (unchecked: for display), None if none."""
    try:
        return _signature(store.get_bytes(signature_key(version), limit=MAX_SIGNATURE_FILE), version).key_id
    except (VersionNotFound, IntegrityError):
        return None


def resign_manifest(store: Store, version: str) -> None:
    """Sign ``version``'s manifest again with the store's key (after checking it against the trusted keys,
    if any): for a store that starts signing, and for a new key. Raises VersionNotFound, SignatureError."""
    try:
        body = store.get_bytes(f"{VERSIONS}/{version}/{MANIFEST}", limit=MANIFEST_LIMIT)
    except VersionNotFound:
        raise VersionNotFound(f"version {version} has no manifest in {store.uri}") from None
    check_manifest(store, version, body)
    sign_manifest(store, version, body)


def _sign_hint(version: str, uri: str) -> str:
    return (
        f"If it is yours (a store from before signing), vouch for it once: `python -m jobs.versions sign {version} "
        f"--store {uri} --signing-key FILE`, run without trusted keys (docs/signing.md)"
    )


def _signature(raw: bytes, where: str) -> Signature:
    if len(raw) > MAX_SIGNATURE_FILE:
        raise SignatureError(f"{where}: its signature file is larger than {MAX_SIGNATURE_FILE} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise SignatureError(f"{where}: its signature file is not JSON") from None
    return Signature.from_json(data, where)


# -- the pointer ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointerFields:
    """What a pointer object says, and the bytes its signature covers."""

    version: str
    generation: int  # 0: a pointer from before generations
    manifest_sha256: str | None
    signature: Signature | None
    message: bytes


def parse_pointer(data: bytes, where: str) -> PointerFields:
    """The fields of the pointer object ``data``. Raises SignatureError when one is malformed."""
    try:
        fields = json.loads(data)
    except ValueError:
        raise SignatureError(f"{where} is not JSON") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("version"), str):
        raise SignatureError(f"{where} is not a JSON object with a 'version'")
    generation = fields.get("generation", 0)
    if type(generation) is not int or not 0 <= generation <= MAX_GENERATION:
        raise SignatureError(f"{where}: generation {str(generation)[:24]!r} is not an integer from 0 to 2^53-1")
    digest = fields.get("manifest_sha256")
    if digest is not None and not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise SignatureError(f"{where}: manifest_sha256 is not a SHA-256")
    signature = Signature.from_json(fields.pop("signature"), where) if "signature" in fields else None
    message = POINTER_CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return PointerFields(fields["version"], generation, digest, signature, message)


def check_pointer(store: Store, pointer: Pointer | None) -> Pointer | None:
    """``pointer``, as just read from ``store``, once it checks out against the trusted keys and the newest
    pointer this host has seen (then remembered). Raises SignatureError; nothing to check without trusted keys.

    A missing pointer where one was seen is refused too: treating the store as empty would let whoever
    deleted it start a new lineage under every reader."""
    signing = store.signing
    if signing.trusted is None:
        return pointer
    where = f"the pointer {store.uri}/{POINTER}"
    if pointer is None:
        with _seen(signing, store.uri) as seen:
            last = seen.read()
            if last is not None and not signing.allow_rollback:
                raise SignatureError(
                    f"{where} is gone, though this host has seen it at generation {last[0]} (version {last[1]}): "
                    "it was deleted; refusing to treat the store as empty. Restore it with `python -m jobs.versions "
                    f"promote {last[1]} --rollback --store {store.uri}`, or accept an empty store with --allow-rollback"
                )
        return None
    fields = parse_pointer(pointer.data, where)
    label = f"{where} (version {fields.version}, generation {fields.generation})"
    if fields.signature is None:
        raise SignatureError(
            f"{label} is not signed, and only pointers signed by a trusted key ({', '.join(signing.trusted.ids)}) "
            f"are followed here; refusing it. {_sign_hint(fields.version, store.uri)}"
        )
    signing.trusted.verify(fields.message, fields.signature, label)
    _remember(store, fields, f"{label}, signed by key {fields.signature.key_id},")
    return pointer


def new_pointer(store: Store, version: str, manifest: bytes, expected: Pointer | None) -> bytes:
    """The pointer object naming ``version`` (whose manifest's bytes are ``manifest``) to replace ``expected``:
    a generation above ``expected``'s and any this host has seen, the manifest's SHA-256, and a signature when
    the store signs."""
    signing = store.signing
    with _seen(signing, store.uri) as seen:
        last = seen.read()
    generation = max(_generation(signing, expected) + 1, (last[0] + 1) if last else 0, time.time_ns() // 1_000_000)
    fields: dict[str, Any] = {"generation": generation, "manifest_sha256": hashlib.sha256(manifest).hexdigest()}
    body = pointer_body(version, fields)
    if signing.key is None:
        return body
    signature = signing.key.sign(parse_pointer(body, "the new pointer").message)
    return pointer_body(version, {**fields, "signature": signature.to_json()})


def remember(store: Store, body: bytes) -> None:
    """Remember the pointer ``body`` this process has just written as the newest it has seen."""
    if store.signing.seen is not None:
        _remember(store, parse_pointer(body, "the new pointer"), "the new pointer")


def _generation(signing: Signing, pointer: Pointer | None) -> int:
    """The generation ``pointer`` records, counted only if it checks out (0 for an older or forged one)."""
    if pointer is None:
        return 0
    try:
        fields = parse_pointer(pointer.data, "the pointer")
        if signing.trusted is not None:
            if fields.signature is None:
                return 0
            signing.trusted.verify(fields.message, fields.signature, "the pointer")
    except SignatureError:
        return 0
    return fields.generation


def _remember(store: Store, fields: PointerFields, label: str) -> None:
    """Check ``fields`` against the newest pointer this host has seen of the store, then remember them."""
    signing = store.signing
    with _seen(signing, store.uri) as seen:
        last = seen.read()
        if last is not None:
            generation, version, digest = last
            older = fields.generation < generation
            forked = fields.generation == generation and (fields.version, fields.manifest_sha256) != (version, digest)
            if (older or forked) and not signing.allow_rollback:
                raise SignatureError(
                    f"{label} is older than the pointer this host has already seen of the store (generation "
                    f"{generation}, version {version}): an old pointer replayed, or a store restored from a "
                    "backup; refusing it. If the store went back on purpose, read it with --allow-rollback "
                    "(load_vectors(..., allow_rollback=True)), or move the pointer on with `python -m jobs.versions "
                    "promote VERSION --rollback`"
                )
            if older or forked:
                log.warning("%s is older than generation %d (%s); rollback allowed", label, generation, version)
            elif fields.generation == generation:
                return
        seen.write(fields)


class _Seen:
    """The newest pointer this host has seen of one store: ``{"store", "generation", "version", ...}``."""

    def __init__(self, path: Path | None, uri: str) -> None:
        self.path, self.uri = path, uri

    def read(self) -> tuple[int, str, str | None] | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_bytes())
            return int(data["generation"]), str(data["version"]), data.get("manifest_sha256")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read %s (%s); the newest pointer seen of %s is forgotten", self.path, exc, self.uri)
            return None

    def write(self, fields: PointerFields) -> None:
        if self.path is None:
            return
        record = {
            "store": self.uri,
            "generation": fields.generation,
            "version": fields.version,
            "manifest_sha256": fields.manifest_sha256,
        }
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".seen-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump(record, out)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot remember the pointer of %s in %s: %s", self.uri, self.path, exc)


@contextlib.contextmanager
def _seen(signing: Signing, uri: str) -> Iterator[_Seen]:
    """The remembered pointer of the store ``uri``, under a lock shared by the host's processes."""
    folder, lock = signing.seen, None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(folder / ".lock")  # the host's one file lock (jobs.storage.locks)
        except OSError as exc:
            log.warning("cannot remember pointers in %s (%s): old pointers are not detected", folder, exc)
    if folder is None or lock is None:
        yield _Seen(None, uri)
        return
    with lock:
        lock.acquire()
        yield _Seen(folder / f"{hashlib.sha256(uri.encode()).hexdigest()[:32]}.json", uri)
