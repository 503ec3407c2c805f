"""Read, write, list and test files the same way whether they are local paths or `s3://` URIs.

Step code writes through here so a local run (plain folders) and a SageMaker run (S3) share one code path.
S3 clients honour `AWS_ENDPOINT_URL` on their own (boto3 reads it), which is how tests point them at moto.
Objects written to S3 are encrypted with SSE-KMS under `EVALOPS_KMS_KEY_ARN` when that variable is set;
otherwise the bucket's default encryption applies.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from step_code.contract.job_env import KMS_KEY_ENV
from step_code.contract.locations import S3_SCHEME, is_s3

# Cache readers fetch many small objects in parallel; botocore's default pool of 10 would serialise them.
S3_MAX_POOL_CONNECTIONS = 64
S3_DELETE_BATCH = 1000  # DeleteObjects' limit per request

_clients: dict[tuple[str | None, ...], Any] = {}
_clients_lock = threading.Lock()


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_s3(uri):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket name")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join path segments with `/` for S3 URIs and the OS separator for local paths."""
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def s3_client() -> Any:
    """A shared S3 client; one per endpoint/region setting so tests switching AWS_ENDPOINT_URL get a fresh one."""
    settings = (
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            # A session per client: boto3's default session is not safe to share between threads.
            client = boto3.session.Session().client(
                "s3", config=BotoConfig(max_pool_connections=S3_MAX_POOL_CONNECTIONS)
            )
            _clients[settings] = client
        return client


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(uri) from None
            raise
        with body:
            data: bytes = body.read()
        return data
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
    """Write a whole object. Local writes go through a temporary file and a rename, so a reader (or a
    restarted run) never sees a half-written file; an S3 PUT is atomic already."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        extra: dict[str, str] = {}
        kms_key = os.environ.get(KMS_KEY_ENV)
        if kms_key:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
        s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(uri: str, text: str, *, content_type: str = "text/plain; charset=utf-8") -> None:
    write_bytes(uri, text.encode("utf-8"), content_type=content_type)


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True
    return Path(uri).exists()


def list_names(prefix_uri: str) -> list[str]:
    """Names of every file under a folder/prefix, relative to it (`a/b.json`), sorted; [] when there is none."""
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri)
        prefix = key.rstrip("/") + "/" if key else ""
        names: list[str] = []
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            names.extend(item["Key"][len(prefix) :] for item in page.get("Contents", []))
        return sorted(names)
    root = Path(prefix_uri)
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def delete_many(uris: list[str]) -> None:
    """Delete files/objects; one that is already gone is not an error (another run may have deleted it).

    S3 objects go in DeleteObjects batches of 1,000 keys per bucket: one request per batch, not per key."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            by_bucket.setdefault(bucket, []).append(key)
        else:
            Path(uri).unlink(missing_ok=True)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + S3_DELETE_BATCH]]
            response = s3_client().delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            failed = [item for item in response.get("Errors", []) if item.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise OSError(
                    f"could not delete {len(failed)} object(s) in s3://{bucket}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )


def _is_not_found(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") in ("404", "NoSuchKey", "NotFound") or (
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    )
