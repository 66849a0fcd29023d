"""The S3 store against a real ``moto_server`` over HTTP, sometimes through a fault-injecting proxy.

No patched clients: every test talks to a moto process through botocore's real HTTP stack, as the job would
to S3. Each test gets its own bucket; the server is shared by the session. Run with
``python -m pytest tests/component/test_s3store.py -q``.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import os
import pickle
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import runs
from jobs.errors import ConflictError, IntegrityError, StoreError, VersionNotFound
from jobs.storage import Pointer, open_store
from jobs.storage import s3 as s3store
from jobs.storage.publish import fetch_verified, publish, read_manifest
from jobs.storage.s3 import S3Store
from jobs.versions import gc
from shards.partitions import discover, open_filesystem
from tests.support.s3server import FaultProxy, MotoServer
from tests.support.s3store import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, MiB


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.endpoint) as running:
        yield running


def store_at(bucket: str, endpoint: str | None = None, **settings: Any) -> S3Store:
    """The store ``s3://bucket/models`` as the job opens it, with some settings overridden."""
    store = S3Store.from_uri(f"s3://{bucket}/models")
    overrides = {"endpoint_url": endpoint, **settings} if endpoint else settings
    return S3Store(store.bucket, store.prefix, dataclasses.replace(store.settings, **overrides))


def model_folder(root: Path, vectors_bytes: int = 12 * MiB) -> Path:
    """A folder shaped like a saved gensim model: a small pickle and large arrays beside it."""
    folder = root / "out"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model").write_bytes(b"\x80\x04gensim-model" + os.urandom(1000))
    (folder / "model" / "model.wv.vectors.npy").write_bytes(b"\x93NUMPY" + os.urandom(vectors_bytes))
    (folder / "model" / "model.syn1neg.npy").write_bytes(b"\x93NUMPY" + os.urandom(256 * 1024))
    (folder / "config.json").write_text('{"vector_size": 100}')
    return folder


def new_version() -> str:
    return f"20261124T020000Z-{uuid.uuid4().hex[:6]}"


def current_on_server(raw: Any, bucket: str) -> tuple[str, str] | None:
    """(body, ETag) of the pointer, read directly from moto."""
    try:
        response = raw.get_object(Bucket=bucket, Key="models/CURRENT")
    except raw.exceptions.NoSuchKey:
        return None
    return response["Body"].read().decode(), response["ETag"]


def test_store_pickles_without_a_client_or_credentials(bucket: str) -> None:
    store = store_at(bucket)
    store.put_bytes("probe", b"x")  # creates the client and resolves credentials
    data = pickle.dumps(store)
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret.encode() not in data
    copy = pickle.loads(data)
    assert (copy.uri, copy.settings, copy._client) == (store.uri, store.settings, None)
    assert copy.get_bytes("probe") == b"x"
    assert isinstance(open_store(f"s3://{bucket}/models"), S3Store)


def test_primitives(bucket: str, raw: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_at(bucket)
    assert store.read_pointer() is None
    assert store.list_versions() == []

    store.put_bytes("versions/v1/a.txt", b"alpha")
    assert store.get_bytes("versions/v1/a.txt") == b"alpha"
    source = tmp_path / "b.bin"
    source.write_bytes(b"beta" * 1000)
    store.put_file("versions/v1/sub/b.bin", source)
    store.get_file("versions/v1/sub/b.bin", tmp_path / "b.copy")
    assert (tmp_path / "b.copy").read_bytes() == source.read_bytes()
    with pytest.raises(VersionNotFound, match=f"s3://{bucket}/models/versions/v1/missing"):
        store.get_bytes("versions/v1/missing")
    with pytest.raises(VersionNotFound):
        store.get_file("versions/v1/missing", tmp_path / "never")
    assert not (tmp_path / "never").exists()

    store.swap_pointer("v1", expected=None)
    pointer = store.read_pointer()
    assert pointer == Pointer("v1", raw.head_object(Bucket=bucket, Key="models/CURRENT")["ETag"])
    with pytest.raises(ConflictError):
        store.swap_pointer("v2", expected=None)  # the store is no longer empty
    store.swap_pointer("v2", expected=pointer)
    with pytest.raises(ConflictError) as stale:
        store.swap_pointer("v3", expected=pointer)  # the ETag moved on
    assert (stale.value.ours, stale.value.theirs, stale.value.expected) == ("v3", "v2", "v1")

    # only versions with a manifest are listed; deleting removes every object, in batches
    for version in ("v1", "v2"):
        store.put_bytes(f"versions/{version}/manifest.json", b"{}")
    store.put_bytes("versions/v0-unfinished/a.txt", b"")
    assert store.list_versions() == ["v1", "v2"]
    monkeypatch.setattr(s3store, "DELETE_BATCH", 2)
    store.delete_version("v1")
    assert store.list_versions() == ["v2"]
    listed = raw.list_objects_v2(Bucket=bucket, Prefix="models/versions/v1/")
    assert listed["KeyCount"] == 0


def test_copy_stays_inside_the_store_and_keeps_the_bytes(bucket: str, raw: Any, tmp_path: Path) -> None:
    store = store_at(bucket, multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * MiB))  # over the threshold: copied in parts
    store.put_file("versions/v1/model/big.bin", big)
    store.copy("versions/v1/model/big.bin", "versions/v2/model/big.bin")
    store.get_file("versions/v2/model/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert raw.head_object(Bucket=bucket, Key="models/versions/v2/model/big.bin")["ETag"].strip('"').endswith("-2")
    with pytest.raises(VersionNotFound):
        store.copy("versions/v1/missing", "versions/v2/missing")


def test_gc_removes_incomplete_versions_only_after_the_grace_period(bucket: str, raw: Any, tmp_path: Path) -> None:
    store = store_at(bucket)
    publish(store, new_version(), model_folder(tmp_path / "a", vectors_bytes=1024), {"parent": None}, expected=None)
    store.put_bytes("versions/v0-died/model/embedding.model", b"partial")
    assert set(store.list_incomplete()) == {"v0-died"}
    assert gc(store, keep=5).endswith("removed 0 incomplete version(s) older than 24 h, left 1 younger")
    two_days_later = time.time() + 2 * 86400
    assert "removed 1 incomplete" in gc(store, keep=5, now=two_days_later)
    assert raw.list_objects_v2(Bucket=bucket, Prefix="models/versions/v0-died/").get("KeyCount") == 0
    assert len(store.list_versions()) == 1


def test_a_store_that_ignores_conditional_writes_is_refused_before_anything_is_written(
    bucket: str, raw: Any, moto: MotoServer, tmp_path: Path
) -> None:
    with FaultProxy(moto.endpoint, strip_headers=("If-Match", "If-None-Match")) as blind:
        store = store_at(bucket, endpoint=blind.endpoint)
        with pytest.raises(StoreError, match=f"the store s3://{bucket}/models ignores conditional writes") as info:
            store.probe()
        assert "If-None-Match: * and If-Match" in str(info.value)
        with pytest.raises(StoreError, match="ignores conditional writes"):
            store.swap_pointer("v1", expected=None)
        assert not raw.list_objects_v2(Bucket=bucket).get("Contents")  # the probe's scratch key is gone
        assert any(s.headers.get("If-None-Match") for s in blind.seen)  # sent, then stripped on the way

    honest = store_at(bucket)
    honest.probe()
    honest.swap_pointer("v1", expected=None)
    assert current_on_server(raw, bucket) is not None
    assert [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]] == ["models/CURRENT"]


def test_a_failed_conditional_put_answers_412(bucket: str, raw: Any) -> None:
    """Guards against a moto regression (5.2.0 answered 500 in server mode): the store relies on 412."""
    first = raw.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
        with pytest.raises(botocore.exceptions.ClientError) as failed:
            raw.put_object(Bucket=bucket, Key="k", Body=b"2", **condition)
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
    raw.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=first["ETag"])
    assert raw.get_object(Bucket=bucket, Key="k")["Body"].read() == b"3"


def test_publish_then_fetch_round_trips_a_multipart_model(bucket: str, raw: Any, tmp_path: Path) -> None:
    store = store_at(bucket, multipart_threshold=1 * MiB, multipart_chunksize=5 * MiB)
    folder = model_folder(tmp_path)
    version = new_version()

    manifest = publish(store, version, folder, {"kind": "word2vec"}, expected=None)

    big = f"models/versions/{version}/model/model.wv.vectors.npy"
    head = raw.head_object(Bucket=bucket, Key=big, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # 12 MiB in 5 MiB parts
    assert head.get("ChecksumSHA256")  # S3 received and kept a SHA-256 checksum
    assert store.read_pointer().version == version  # type: ignore[union-attr]
    assert store.list_versions() == [version]
    assert read_manifest(store, "latest")["files"] == manifest["files"]

    fetched = fetch_verified(store, "latest", tmp_path / "cache")
    for name in manifest["files"]:
        assert (fetched / name).read_bytes() == (folder / name).read_bytes(), name


def test_uploads_carry_a_sha256_checksum_unless_turned_off(
    bucket: str, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = model_folder(tmp_path, vectors_bytes=6 * MiB)
    store = store_at(bucket, proxy.endpoint, multipart_threshold=1 * MiB, multipart_chunksize=5 * MiB)
    publish(store, new_version(), folder, {}, expected=None)
    uploads = [s for s in proxy.seen if s.method == "PUT"]
    assert uploads and all(s.headers.get("x-amz-checksum-sha256") for s in uploads)
    assert any("partNumber=" in s.path for s in uploads)
    assert all(s.path.startswith(f"/{bucket}/") for s in proxy.seen)  # path-style for an IP endpoint

    # for S3-compatible stores that reject checksum headers
    proxy.seen.clear()
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    monkeypatch.setenv("EMBEDDING_REFRESH_S3_CHECKSUM_ALGORITHM", "none")
    monkeypatch.setenv("EMBEDDING_REFRESH_S3_ADDRESSING_STYLE", "path")
    plain = store_at(bucket, proxy.endpoint, multipart_threshold=1 * MiB, multipart_chunksize=5 * MiB)
    assert plain.client.meta.config.s3 == {"addressing_style": "path"}
    version = new_version()
    publish(plain, version, folder, {}, expected=store.read_pointer())
    uploads = [s for s in proxy.seen if s.method == "PUT"]
    assert uploads and not any(k.lower().startswith("x-amz-checksum") for s in uploads for k in s.headers)
    fetch_verified(plain, version, tmp_path / "cache")


def test_fetch_refuses_a_corrupted_or_missing_file(bucket: str, raw: Any, tmp_path: Path) -> None:
    store = store_at(bucket)
    version = new_version()
    folder = model_folder(tmp_path, vectors_bytes=MiB)
    publish(store, version, folder, {}, expected=None)
    vectors = f"models/versions/{version}/model/model.wv.vectors.npy"
    original = raw.get_object(Bucket=bucket, Key=vectors)["Body"].read()

    tampered = bytearray(original)
    tampered[-1] ^= 0xFF  # same size, different bytes
    raw.put_object(Bucket=bucket, Key=vectors, Body=bytes(tampered))
    with pytest.raises(IntegrityError, match=re.escape("model.wv.vectors.npy: SHA-256")):
        fetch_verified(store, "latest", tmp_path / "a")

    raw.put_object(Bucket=bucket, Key=vectors, Body=original[:-10])
    with pytest.raises(IntegrityError, match="size"):
        fetch_verified(store, "latest", tmp_path / "b")

    raw.put_object(Bucket=bucket, Key=vectors, Body=original)
    raw.delete_object(Bucket=bucket, Key=f"models/versions/{version}/model/model.syn1neg.npy")
    with pytest.raises(IntegrityError, match=re.escape("missing model/model.syn1neg.npy")):
        fetch_verified(store, "latest", tmp_path / "c")


def test_the_second_of_two_publishers_from_one_pointer_gets_a_conflict(bucket: str, raw: Any, tmp_path: Path) -> None:
    base = new_version()
    publish(store_at(bucket), base, model_folder(tmp_path / "base", MiB), {}, expected=None)
    first_store, second_store = store_at(bucket), store_at(bucket)
    start = first_store.read_pointer()
    assert start == second_store.read_pointer()
    first, second = new_version(), new_version()

    publish(first_store, first, model_folder(tmp_path / "first", MiB), {}, expected=start)
    with pytest.raises(ConflictError) as conflict:
        publish(second_store, second, model_folder(tmp_path / "second", MiB), {}, expected=start)

    assert (conflict.value.ours, conflict.value.theirs, conflict.value.expected) == (second, first, base)
    assert first in str(conflict.value) and second in str(conflict.value)
    assert current_on_server(raw, bucket)[0].find(first) > 0  # type: ignore[index]
    assert first_store.list_versions() == sorted([base, first, second])  # the loser stays, unpromoted
    fetch_verified(second_store, second, tmp_path / "loser")


def test_conflict_on_an_empty_store(bucket: str, tmp_path: Path) -> None:
    one, two = new_version(), new_version()
    publish(store_at(bucket), one, model_folder(tmp_path / "one", MiB), {}, expected=None)
    with pytest.raises(ConflictError) as conflict:
        publish(store_at(bucket), two, model_folder(tmp_path / "two", MiB), {}, expected=None)
    assert (conflict.value.ours, conflict.value.theirs, conflict.value.expected) == (two, one, None)


def test_a_missing_pointer_read_as_403_is_settled_by_listing(
    bucket: str, raw: Any, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A least-privilege caller (ListBucket only under the prefix) gets 403, not 404, for the missing pointer."""
    proxy.fail("403", method="GET", path_contains="/models/CURRENT", times=100)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # every request, redirects included, via the proxy
    store = S3Store.from_uri(f"s3://{bucket}/models")
    assert store.read_pointer() is None
    raw.put_object(Bucket=bucket, Key="models/CURRENT", Body=b'{"version": "v1"}')
    with pytest.raises(StoreError, match="AccessDenied"):
        store.read_pointer()  # it exists, yet reading it is denied: a real permission problem, reported


def test_transient_failures_are_retried_and_publish_succeeds(
    bucket: str, raw: Any, proxy: FaultProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobs")
    store = store_at(bucket, proxy.endpoint, multipart_threshold=1 * MiB, multipart_chunksize=5 * MiB)
    proxy.fail("503", times=2, method="PUT", path_contains="partNumber=")
    proxy.fail("drop", method="PUT", path_contains="partNumber=2")
    proxy.fail("500", method="POST", path_contains="uploadId=")  # CompleteMultipartUpload
    proxy.fail("drop", method="PUT", path_contains="/manifest.json")
    # the pointer write reaches S3 but its answer is lost: the retry then fails If-None-Match
    proxy.fail("lose_response", method="PUT", path_contains="/CURRENT")
    proxy.fail("503", method="GET", path_contains="/manifest.json")
    proxy.fail("drop", method="GET", path_contains="model.wv.vectors.npy")
    version = new_version()

    manifest = publish(store, version, model_folder(tmp_path), {}, expected=None)
    fetched = fetch_verified(store, "latest", tmp_path / "cache")

    assert proxy.pending() == 0, "every planned fault fired"
    assert len(proxy.injected()) == 8
    assert version in current_on_server(raw, bucket)[0]  # type: ignore[index]
    assert (
        "the write succeeded though its answer was lost" in caplog.text
    )  # recognised as ours, not reported as a conflict
    assert (fetched / "model/model.wv.vectors.npy").stat().st_size == manifest["files"]["model/model.wv.vectors.npy"][
        "size"
    ]


def test_a_pointer_write_that_happened_is_not_reported_as_failed(bucket: str, raw: Any, proxy: FaultProxy) -> None:
    """The write reaches S3, its answer is lost, and the retry fails for good: the re-read settles it."""
    store = store_at(bucket, proxy.endpoint, max_attempts=2)
    proxy.fail("lose_response", method="PUT", path_contains="/CURRENT")
    proxy.fail("503", method="PUT", path_contains="/CURRENT")

    store.swap_pointer("v1", expected=None)

    assert proxy.pending() == 0
    assert '"version": "v1"' in current_on_server(raw, bucket)[0]  # type: ignore[index]


@pytest.mark.parametrize("action", ["503", "drop"])
def test_a_store_that_keeps_failing_raises_store_error_and_leaves_the_pointer(
    action: str, bucket: str, raw: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    publish(store_at(bucket), new_version(), model_folder(tmp_path / "good", MiB), {}, expected=None)
    before = current_on_server(raw, bucket)
    failing = store_at(bucket, proxy.endpoint, max_attempts=2)
    expected = failing.read_pointer()
    proxy.fail_everything(action)  # type: ignore[arg-type]

    started = time.monotonic()
    with pytest.raises(StoreError) as failed:
        publish(failing, new_version(), model_folder(tmp_path / "bad", MiB), {}, expected=expected)

    assert not isinstance(failed.value, ConflictError)
    assert time.monotonic() - started < 30
    assert f"s3://{bucket}/models/versions/" in str(failed.value) and "cannot upload" in str(failed.value)
    assert current_on_server(raw, bucket) == before


def test_no_credential_appears_in_errors_or_logs(
    bucket: str, proxy: FaultProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    closed_port = f"http://127.0.0.1:{proxy.endpoint.rsplit(':', 1)[1]}"
    proxy.stop()  # nothing listens there any more
    errors: list[BaseException] = []
    attempts: list[Callable[[], object]] = [
        lambda: store_at(bucket, closed_port, max_attempts=1).put_bytes("k", b"x"),
        lambda: store_at("no-such-bucket-0042").get_bytes("k"),
        lambda: store_at("no-such-bucket-0042").put_file("k", tmp_path / "k"),
        lambda: store_at("no-such-bucket-0042").swap_pointer("v", None),
        lambda: store_at("no-such-bucket-0042").list_versions(),
    ]
    (tmp_path / "k").write_bytes(b"x")
    for attempt in attempts:
        with pytest.raises(StoreError) as failed:
            attempt()
        errors.append(failed.value)

    assert "NoSuchBucket" in str(errors[1]) and "s3://no-such-bucket-0042/models/k" in str(errors[1])
    ours = [str(e) for e in errors] + [repr(e) for e in errors] + [str(e.__cause__) for e in errors]
    ours += [r.getMessage() for r in caplog.records if r.name.startswith(("jobs", "shards", "tests"))]
    ours += [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    for credential in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert not [text for text in ours if credential in text], credential
    # botocore's own DEBUG records show the request headers (the access key id in Authorization, the session
    # token), so keep botocore below DEBUG in production; they never show the secret key
    assert not [r for r in caplog.records if SECRET_KEY in r.getMessage()]


def test_the_fault_proxy_forwards_chunked_bodies_and_conditions_byte_for_byte() -> None:
    """The proxy under the tests above: a chunked body with extensions and a trailer, and If-Match, arrive
    unchanged at the upstream (a raw socket that answers with the bytes it received)."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def upstream() -> None:
        connection, _ = listener.accept()
        with connection:
            data = b""
            while True:  # until the headers, the last chunk and the trailers' empty line are in
                _, ended, rest = data.partition(b"\r\n\r\n")
                if ended and b"\r\n0\r\n" in b"\r\n" + rest and rest.endswith(b"\r\n\r\n"):
                    break
                more = connection.recv(65536)
                if not more:
                    break
                data += more
            received.append(data)
            connection.sendall(b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 2\r\n\r\nok')

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-amz-checksum-sha256: abc=\r\n\r\n"
    with FaultProxy(f"http://127.0.0.1:{listener.getsockname()[1]}") as proxy:
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        client = http.client.HTTPConnection(host, int(port), timeout=10)
        client.putrequest("PUT", "/bucket/key?x=1", skip_accept_encoding=True)
        for name, value in (("Transfer-Encoding", "chunked"), ("If-Match", '"e1"'), ("Expect", "100-continue")):
            client.putheader(name, value)
        client.endheaders()
        client.send(body)
        response = client.getresponse()
        assert (response.status, response.getheader("ETag"), response.read()) == (200, '"abc"', b"ok")
    thread.join(timeout=10)
    listener.close()
    head, _, forwarded = received[0].partition(b"\r\n\r\n")
    assert head.startswith(b"PUT /bucket/key?x=1 HTTP/1.1\r\n")
    assert b'If-Match: "e1"' in head and b"Transfer-Encoding: chunked" in head and b"Expect" not in head
    assert forwarded == body


def test_pyarrow_discovers_partitions_on_the_endpoint(bucket: str, raw: Any) -> None:
    table = pa.table({"text": ["the quick brown fox", "jumps over the lazy dog"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    objects = {
        "data/date=2026-11-23/part-0000.parquet": buffer.getvalue(),
        "data/date=2026-11-23/_SUCCESS": b"",
        "data/date=2026-11-24/notes.txt": b"a line of text\nanother line\n",
        "data/_temporary/0/part-9999.parquet": b"partial",
    }
    for key, body in objects.items():
        raw.put_object(Bucket=bucket, Key=key, Body=body)

    fs, root = open_filesystem(f"s3://{bucket}/data/")
    found = discover(fs, root)

    assert [(p.uri, p.format, p.hive) for p in found] == [
        (f"s3://{bucket}/data/date=2026-11-23/part-0000.parquet", "parquet", (("date", "2026-11-23"),)),
        (f"s3://{bucket}/data/date=2026-11-24/notes.txt", "text", (("date", "2026-11-24"),)),
    ]
    assert pq.read_table(found[0].path, filesystem=fs).equals(table)


def test_pyarrow_follows_the_store_s_retry_and_addressing_settings(
    bucket: str, raw: Any, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw.put_object(Bucket=bucket, Key="data/part-0.txt", Body=b"some words\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    proxy.fail("503", times=2, method="GET")

    fs, root = open_filesystem(f"s3://{bucket}/data")
    assert [p.name for p in discover(fs, root)] == ["part-0.txt"]
    assert proxy.pending() == 0

    monkeypatch.setenv("EMBEDDING_REFRESH_S3_ADDRESSING_STYLE", "virtual")
    virtual = open_filesystem(f"s3://{bucket}/data")[0]
    assert virtual.settings.pyarrow_options()["force_virtual_addressing"] is True  # what workers rebuild it from
    assert type(virtual).__reduce__(virtual)[1][0] == virtual.settings


def test_the_newest_run_records_cost_one_listing_and_old_ones_are_pruned(bucket: str, proxy: FaultProxy) -> None:
    store = store_at(bucket, proxy.endpoint)
    for i in range(6):
        record = runs.RunRecord.begin("s3://corpus/events", run=f"refresh-day{i}", now=1_800_000_000.0 + i * 86_400)
        record.end("published", 0)
        runs.write(store, record)
    proxy.seen.clear()

    assert [r["run"] for r in runs.recent(store, 2)] == ["refresh-day5", "refresh-day4"]
    listings = [s.path for s in proxy.seen if "list-type=2" in s.path]
    assert len(listings) == 1 and "max-keys=2" in listings[0]  # one request, whatever the history
    assert len([s for s in proxy.seen if s.method == "GET"]) == 3  # that listing and two records

    proxy.seen.clear()
    assert len(runs.prune(store, 4)) == 2
    assert [r["run"] for r in runs.recent(store, 10)] == [f"refresh-day{i}" for i in (5, 4, 3, 2)]
    assert [s.method for s in proxy.seen][:2] == ["GET", "POST"]  # a listing, then one batch deletion
