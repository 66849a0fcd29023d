"""What the tests share: clusters, the S3 server, corpora, flag lists, hostile stores and file systems."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository's root
