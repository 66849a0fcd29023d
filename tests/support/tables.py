"""What the table tests share: Delta and Iceberg tables on local disk or moto S3, and their rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pytest

from tests.support.corpora import clustered
from tests.support.s3server import DUMMY_ENV, MotoServer


def rows(ids: range, day: str = "2026-11-01") -> pa.Table:
    """Rows ``ids`` of a corpus whose every row differs (each id seeds its own sentence)."""
    return pa.table({"id": list(ids), "text": [clustered(1, seed=i)[0] for i in ids], "dt": [day] * len(ids)})


@pytest.fixture
def lake_bucket(moto: MotoServer) -> Iterator[str]:
    name = f"tables-{uuid.uuid4().hex[:12]}"
    credentials = {
        "aws_access_key_id": DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
    }
    boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", **credentials).create_bucket(Bucket=name)
    yield name


def iceberg_env(name: str, **properties: str) -> dict[str, str]:
    """A catalog configured the way pyiceberg users configure one: ``PYICEBERG_CATALOG__<NAME>__<KEY>``."""
    return {
        f"PYICEBERG_CATALOG__{name.upper()}__{key.replace('.', '__').replace('-', '_').upper()}": value
        for key, value in properties.items()
    }


def new_table(catalog: Any, name: str) -> Any:
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(
        NestedField(1, "id", LongType()), NestedField(2, "text", StringType()), NestedField(3, "dt", StringType())
    )
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "dt"))
    catalog.create_namespace_if_not_exists("corpus")
    return catalog.create_table(f"corpus.{name}", schema=schema, partition_spec=spec)
