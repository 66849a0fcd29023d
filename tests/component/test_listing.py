"""Listing on S3 (a real moto server): each kept prefix listed with a delimiter. The listing's rules without a
server are in ``tests/unit/test_listing.py``.
"""

from __future__ import annotations

import uuid

import boto3
import pytest

from shards.listing import Bounds, list_bounded
from shards.partitions import Readiness, hold_back, open_filesystem, partitions_of
from tests.support.counting_fs import CountingFileSystem, counting
from tests.support.s3server import DUMMY_ENV, MotoServer


def test_on_s3_each_kept_prefix_is_listed_with_a_delimiter(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    s3.create_bucket(Bucket=bucket)
    for day in range(1, 6):
        s3.put_object(Bucket=bucket, Key=f"corpus/dt=2026-11-0{day}/p.parquet", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"corpus/dt=2026-11-0{day}/_SUCCESS", Body=b"")
    fs, root = open_filesystem(f"s3://{bucket}/corpus")
    handler = CountingFileSystem(fs)
    listing = list_bounded(counting(handler), root, Bounds(since="2026-11-04"))
    assert sorted((path[len(root) :].lstrip("/"), recursive) for path, recursive in handler.listed) == [
        ("", False),
        ("dt=2026-11-03", True),  # the newest day left out, for its marker
        ("dt=2026-11-04", False),
        ("dt=2026-11-05", False),
    ]
    found = partitions_of(counting(handler), listing)
    assert [p.key for p in found] == ["dt=2026-11-04/p.parquet", "dt=2026-11-05/p.parquet"]
    ready, waiting = hold_back(listing, found, Readiness(), now=2e9)
    assert len(ready) == 2 and waiting == []
