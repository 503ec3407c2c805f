"""storage: the same calls on local folders and on S3 (moto server)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from step_code import storage
from step_code.contract.job_env import KMS_KEY_ENV
from tests.support.moto_server import MotoServer

BUCKET = "evalops-test-data"


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}"


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    return str(request.getfixturevalue("bucket")) + "/root"


def test_write_read_list_exists(root: str) -> None:
    storage.write_text(storage.join(root, "a.json"), '{"x": 1}')
    storage.write_bytes(storage.join(root, "sub", "b.bin"), b"\x00\x01")

    assert storage.read_text(storage.join(root, "a.json")) == '{"x": 1}'
    assert storage.read_bytes(storage.join(root, "sub", "b.bin")) == b"\x00\x01"
    assert storage.list_names(root) == ["a.json", "sub/b.bin"]
    assert storage.list_names(storage.join(root, "sub")) == ["b.bin"]
    assert storage.exists(storage.join(root, "a.json"))
    assert not storage.exists(storage.join(root, "missing.json"))
    assert storage.list_names(storage.join(root, "nothing-here")) == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "missing.json"))


def test_local_write_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.txt"
    storage.write_text(str(target), "first")
    storage.write_text(str(target), "second")

    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_s3_writes_use_the_kms_key_when_set(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv(KMS_KEY_ENV, key_arn)

    storage.write_text(f"{bucket}/encrypted.txt", "secret")

    head = boto3.client("s3").head_object(Bucket=BUCKET, Key="encrypted.txt")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn


def test_s3_uri_helpers() -> None:
    assert storage.split_s3("s3://bucket/a/b.json") == ("bucket", "a/b.json")
    assert storage.join("s3://bucket/prefix/", "x", "/y.json") == "s3://bucket/prefix/x/y.json"
    assert storage.basename("s3://bucket/catalog/data.jsonl") == "data.jsonl"
    with pytest.raises(ValueError, match="no bucket"):
        storage.split_s3("s3:///key")
