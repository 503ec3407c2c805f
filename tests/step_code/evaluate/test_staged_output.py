"""An s3:// output dir: fmeval writes local files, which are uploaded when the step finishes."""

from __future__ import annotations

import boto3
import pytest

from step_code.evaluate_step import staged_output
from tests.support.moto_server import MotoServer


def test_s3_output_is_staged_locally_then_uploaded(moto: MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    with staged_output("s3://results/run/evaluation") as folder:
        (folder / "algorithms").mkdir()
        (folder / "algorithms" / "factual_knowledge.html").write_text("<html></html>")
        (folder / "summary.json").write_text("{}")
    assert not folder.exists()
    listed = s3.list_objects_v2(Bucket="results", Prefix="run/evaluation/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "run/evaluation/algorithms/factual_knowledge.html",
        "run/evaluation/summary.json",
    ]
    page = s3.get_object(Bucket="results", Key="run/evaluation/algorithms/factual_knowledge.html")
    assert page["ContentType"] == "text/html; charset=utf-8" and page["Body"].read() == b"<html></html>"


def test_nothing_is_uploaded_when_the_step_fails(moto: MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    with pytest.raises(RuntimeError), staged_output("s3://results/run/evaluation") as folder:
        (folder / "summary.json").write_text("{}")
        raise RuntimeError("scoring failed")
    assert s3.list_objects_v2(Bucket="results").get("KeyCount") == 0
