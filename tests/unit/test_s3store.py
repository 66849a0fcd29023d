"""The S3 store's settings and names, without a server: the environment read when a store is opened, invalid
settings refused naming the variable, sizes, URIs and keys. The store against a real moto server is in
``tests/component/test_s3store.py``.
"""

from __future__ import annotations

import pytest

from jobs.errors import ConfigError, StoreError
from jobs.storage import s3 as s3store
from jobs.storage.s3 import S3Store
from shards.s3settings import S3Settings, parse_size
from tests.support.s3store import MiB


def test_settings_come_from_the_environment_when_the_store_is_opened() -> None:
    settings = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_RETRY_MODE": "adaptive",
            "AWS_MAX_ATTEMPTS": "7",
            "EMBEDDING_REFRESH_S3_ADDRESSING_STYLE": "path",
            "EMBEDDING_REFRESH_S3_CHECKSUM_ALGORITHM": "none",
            "EMBEDDING_REFRESH_S3_MULTIPART_THRESHOLD": "8MiB",
            "EMBEDDING_REFRESH_S3_MULTIPART_CHUNKSIZE": "5242880",
            "EMBEDDING_REFRESH_S3_MAX_CONCURRENCY": "4",
        }
    )
    assert settings == S3Settings(
        endpoint_url="http://minio:9000",
        region="eu-west-1",
        addressing_style="path",
        retry_mode="adaptive",
        max_attempts=7,
        checksum_algorithm=None,
        multipart_threshold=8 * MiB,
        multipart_chunksize=5 * MiB,
        max_concurrency=4,
    )
    config = s3store.client_config(settings)
    assert config.retries == {"mode": "adaptive", "max_attempts": 7}
    assert config.s3 == {"addressing_style": "path"}
    assert S3Settings.from_env({}) == S3Settings()
    assert S3Settings.from_env({"AWS_ENDPOINT_URL_S3": "http://a", "AWS_ENDPOINT_URL": "http://b"}).endpoint_url == (
        "http://a"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMBEDDING_REFRESH_S3_ADDRESSING_STYLE", "sideways"),
        ("AWS_RETRY_MODE", "eager"),
        ("AWS_MAX_ATTEMPTS", "0"),
        ("AWS_MAX_ATTEMPTS", "many"),
        ("EMBEDDING_REFRESH_S3_CHECKSUM_ALGORITHM", "MD5"),
        ("EMBEDDING_REFRESH_S3_MULTIPART_CHUNKSIZE", "1MiB"),
        ("EMBEDDING_REFRESH_S3_MULTIPART_THRESHOLD", "big"),
    ],
)
def test_invalid_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        S3Settings.from_env({name: value})


def test_sizes() -> None:
    assert parse_size("64MiB", "X") == parse_size("64 mb", "X") == 64 * MiB
    assert parse_size("1048576", "X") == MiB
    assert parse_size("2GiB", "X") == 2 << 30


def test_uri_parsing_and_keys() -> None:
    assert S3Store.from_uri("s3://bucket/a/b/", S3Settings()).uri == "s3://bucket/a/b"
    assert S3Store.from_uri("s3://bucket", S3Settings()).uri == "s3://bucket"
    with pytest.raises(ConfigError):
        S3Store.from_uri("s3:///prefix", S3Settings())
    with pytest.raises(StoreError, match="invalid key"):
        S3Store("bucket", "p").put_bytes("versions/../CURRENT", b"")
