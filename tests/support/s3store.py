"""What the S3 store's tests share: dummy credentials, the environment that reaches the moto server, raw
clients and a fresh bucket."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.s3server import MotoServer

ACCESS_KEY = "AKIAFAKEACCESSKEY0042"


SECRET_KEY = "fake/secret+key/that-must-never-leak-0042"


SESSION_TOKEN = "FakeSessionTokenThatMustNeverLeak0042"


MiB = 1 << 20


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials and the moto endpoint in the environment; nothing from the developer's ~/.aws."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "EMBEDDING_REFRESH_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto.endpoint


@pytest.fixture
def raw(aws_env: str) -> Any:
    """A plain boto3 client straight to moto, to look behind the store's back."""
    return boto3.client("s3", endpoint_url=aws_env)


@pytest.fixture
def bucket(raw: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    raw.create_bucket(Bucket=name)
    return name
