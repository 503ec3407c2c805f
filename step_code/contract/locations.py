"""Where a file the config names lives: on S3 (an s3:// URI) or in the prompt catalog (any other location)."""

from __future__ import annotations

S3_SCHEME = "s3://"


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def is_catalog_file(location: str | None) -> bool:
    """A location that is set and not on S3 names a prompt catalog file: uploaded and read with the catalog."""
    return bool(location) and not is_s3(location or "")
