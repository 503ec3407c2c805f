"""The approved champion found in SageMaker's registry and its stored outputs read from S3 (moto server)."""

from __future__ import annotations

import json
from typing import Any

import boto3

from step_code import champion
from tests.step_code.aws.conftest import ARTIFACTS_BUCKET, ARTIFACTS_URI, GROUP
from tests.step_code.select.summaries import make_summary

PREFIX = ARTIFACTS_URI.removeprefix(f"s3://{ARTIFACTS_BUCKET}/")


def _package(aws: Any, status: str, statistics_key: str) -> str:
    uri = f"s3://{ARTIFACTS_BUCKET}/{statistics_key}"
    metrics = {"ContentType": "application/json", "S3Uri": uri}
    arn: str = aws.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        SourceUri="http://127.0.0.1/model",
        ModelMetrics={"ModelQuality": {"Statistics": metrics, "Constraints": metrics}},
    )["ModelPackageArn"]
    return arn


def test_the_latest_approved_package_and_its_stored_outputs_are_read_from_s3(aws: Any) -> None:
    s3 = boto3.client("s3")
    summary = make_summary("llama", {"factual_knowledge": 0.5})
    algorithm = summary.algorithms[0].model_copy(
        update={"record_scores_path": "algorithms/factual_knowledge_record_scores.jsonl"}
    )
    summary = summary.model_copy(update={"algorithms": [algorithm]})
    folder = f"{PREFIX}/e1/registration/llama"
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{folder}/summary.json", Body=summary.model_dump_json().encode())
    rows = [
        {"record_id": "r1", "scores": {"factual_knowledge": 1.0}},
        {"record_id": "r2", "scores": {"factual_knowledge": 0.0}},
    ]
    s3.put_object(
        Bucket=ARTIFACTS_BUCKET,
        Key=f"{folder}/algorithms/factual_knowledge_record_scores.jsonl",
        Body="".join(json.dumps(row) + "\n" for row in rows).encode(),
    )
    assert champion.latest_approved_in_sagemaker(aws, GROUP) is None  # no group yet
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    _package(aws, "Approved", "old/summary.json")
    approved = _package(aws, "Approved", f"{folder}/summary.json")
    _package(aws, "PendingManualApproval", "newer/summary.json")

    package = champion.latest_approved_in_sagemaker(aws, GROUP)

    assert package is not None and package.arn == approved and package.version == 2
    assert package.statistics_uri == f"s3://{ARTIFACTS_BUCKET}/{folder}/summary.json"
    with champion.stored_evidence(package.statistics_uri) as stored:
        evidence = champion.load_champion(stored, package)
    assert evidence.summary.model == "champion-v2-llama"
    assert evidence.record_scores == {"factual_knowledge": {"r1": 1.0, "r2": 0.0}}
