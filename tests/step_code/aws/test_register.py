"""The register step: the winner's own artifact, metrics and metadata, in SageMaker (moto) or in files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from step_code import register
from step_code.contract.config import Config
from step_code.contract.files import (
    CONFIG_FILE,
    CONFIG_INPUT,
    DECISION,
    DECISION_FILE,
    REGISTRATION,
    REGISTRATION_FILE,
    SUMMARIES,
    SUMMARY_FILE,
)
from step_code.contract.results import CandidateVerdict, Decision, ModelArtifact, Registration
from step_code.register import metadata_text
from tests.step_code.aws.conftest import (
    ARTIFACTS_BUCKET,
    GROUP,
    INSTANCE,
    RUN_ARTIFACTS,
    RunDirs,
    make_summary,
    planned_step,
)

EXECUTION = "7e9000000001"
BASE_DATA = "s3://jumpstart-cache-prod-us-east-1/meta-textgeneration/llama-2-7b/artifacts/inference-prepack/v1.0.0/"
TUNED_DATA = f"{RUN_ARTIFACTS}/{EXECUTION}/finetune/llama-tuned/job/output/model/"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.1.1-tgi1.4.0-gpu"
REASON = "llama-tuned wins: weighted score 0.81 > 0.74 (llama-base); p95 820 ms <= 2000 ms, cost $0.42/1k."
# CreateModelPackage's pattern for CustomerMetadataProperties keys and values, in Python's regex dialect.
METADATA_PATTERN = re.compile(r"^[\w .:/=+\-@]{1,256}$")


def verdict(model: str, score: float, rank: int) -> CandidateVerdict:
    return CandidateVerdict(
        model=model,
        weighted_score=score,
        metrics={"factual_knowledge": score},
        p95_latency_ms=820.5,
        cost_per_1k_prompts_usd=0.42,
        failed_fraction=0.025,
        eligible=True,
        reasons=[],
        rank=rank,
    )


def decision(winner: str | None = "llama-tuned", meets_policy: bool = True) -> Decision:
    return Decision(
        meets_policy=meets_policy,
        winner=winner,
        reason=REASON if meets_policy else "no candidate reaches min_primary_score 0.9",
        primary_metric="factual_knowledge",
        weights={"factual_knowledge": 1.0},
        candidates=[verdict("llama-tuned", 0.81, 1), verdict("llama-base", 0.74, 2)],
        policy={"min_primary_score": 0.5},
    )


def artifact(model: str, *, finetuned: bool) -> ModelArtifact:
    return ModelArtifact(
        provider="jumpstart",
        model_id="meta-textgeneration-llama-2-7b",
        model_version="4.1.0",
        image_uri=IMAGE,
        model_data_url=TUNED_DATA if finetuned else BASE_DATA,
        endpoint_name=f"evalops-test-{model}-{EXECUTION}",
        training_job_name=f"evalops-test-{model}-{EXECUTION}" if finetuned else None,
        finetuned=finetuned,
        environment={"HF_MODEL_ID": "/opt/ml/model", "SM_NUM_GPUS": "1"},
    )


def stage(run_dirs: RunDirs, chosen: Decision) -> None:
    run_dirs.put_input(DECISION, DECISION_FILE, chosen.model_dump_json(indent=2))
    for model, finetuned, score in (("llama-tuned", True, 0.81), ("llama-base", False, 0.74)):
        summary = make_summary(model, artifact(model, finetuned=finetuned), {"factual_knowledge": score}, EXECUTION)
        run_dirs.put_input(f"{SUMMARIES}/{model}", SUMMARY_FILE, summary.model_dump_json(indent=2))


def s3_bytes(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_registers_the_fine_tuned_winner_with_metrics_and_metadata(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    stage(run_dirs, decision())
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)) == 0

    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert (registration.winner, registration.model_package_version, registration.registry) == (
        "llama-tuned",
        1,
        "sagemaker",
    )
    assert registration.deployable and registration.model_data_url == TUNED_DATA
    package = aws.describe_model_package(ModelPackageName=registration.model_package_arn)
    assert package["ModelPackageGroupName"] == GROUP and package["ModelApprovalStatus"] == "Approved"
    specification = package["InferenceSpecification"]
    container = specification["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["Environment"] == {"HF_MODEL_ID": "/opt/ml/model", "SM_NUM_GPUS": "1"}
    # The fine-tuned model's own weights, not the JumpStart base model it was trained from.
    assert container["ModelDataSource"]["S3DataSource"] == {
        "S3Uri": TUNED_DATA,
        "S3DataType": "S3Prefix",
        "CompressionType": "None",
        "ModelAccessConfig": {"AcceptEula": True},
    }
    assert specification["SupportedRealtimeInferenceInstanceTypes"] == [INSTANCE]

    quality = package["ModelMetrics"]["ModelQuality"]
    summary_bytes = (run_dirs.input_root / SUMMARIES / "llama-tuned" / SUMMARY_FILE).read_bytes()
    decision_bytes = (run_dirs.input_root / DECISION / DECISION_FILE).read_bytes()
    for source, expected in ((quality["Statistics"], summary_bytes), (quality["Constraints"], decision_bytes)):
        assert source["S3Uri"].startswith(f"{RUN_ARTIFACTS}/{EXECUTION}/registration/")
        assert s3_bytes(source["S3Uri"]) == expected
        assert source["ContentDigest"] == f"sha256:{hashlib.sha256(expected).hexdigest()}"

    config_bytes = (run_dirs.input_root / CONFIG_INPUT / CONFIG_FILE).read_bytes()
    metadata = package["CustomerMetadataProperties"]
    assert metadata["evalops:winner"] == "llama-tuned"
    assert metadata["evalops:finetuned"] == "true"
    assert metadata["evalops:training-job"] == f"evalops-test-llama-tuned-{EXECUTION}"
    assert metadata["evalops:execution-id"] == EXECUTION
    assert metadata["evalops:dataset-sha256"] == "ab" * 32
    assert metadata["evalops:config-sha256"] == hashlib.sha256(config_bytes).hexdigest()
    assert metadata["metric:factual_knowledge"] == "0.81"
    assert metadata["evalops:weighted-score"] == "0.81"
    assert metadata["evalops:decision-reason"] == (
        "llama-tuned wins: weighted score 0.81 0.74 llama-base p95 820 ms = 2000 ms cost 0.42/1k."
    )
    for key, value in metadata.items():
        assert METADATA_PATTERN.match(key) and len(key) <= 128, key
        assert METADATA_PATTERN.match(value), (key, value)
    assert REASON in package["ModelPackageDescription"]


def test_refuses_when_the_policy_is_not_met(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    stage(run_dirs, decision(winner=None, meets_policy=False))
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)) == 1
    assert capsys.readouterr().err.strip() == (
        "register: error: decision.json: no model meets the selection policy, nothing to register "
        "(no candidate reaches min_primary_score 0.9)"
    )
    assert aws.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []


def test_a_missing_group_is_named(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    stage(run_dirs, decision())
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)) == 1
    assert f"model package group {GROUP} does not exist" in capsys.readouterr().err
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=ARTIFACTS_BUCKET)


def test_a_directory_registry_writes_versions_and_is_idempotent_per_execution(
    config: Config, run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALOPS_ARTIFACTS_URI", raising=False)
    stage(run_dirs, decision())
    step = planned_step(config, "RegisterWinner")
    assert register.main(run_dirs.argv(step, EXECUTION, local_registry=True)) == 0
    assert register.main(run_dirs.argv(step, EXECUTION, local_registry=True)) == 0
    assert register.main(run_dirs.argv(step, "7e9000000002", local_registry=True)) == 0

    group_dir = run_dirs.registry / GROUP
    assert sorted(p.name for p in group_dir.glob("*.json")) == ["1.json", "2.json"]
    first = json.loads((group_dir / "1.json").read_text())
    request, response = first["request"], first["response"]
    assert request["ModelPackageGroupName"] == GROUP and request["ModelApprovalStatus"] == "Approved"
    container = request["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == TUNED_DATA
    assert response["ModelPackageVersion"] == 1 and response["ModelPackageStatus"] == "Completed"
    assert response["InferenceSpecification"] == request["InferenceSpecification"]
    assert response["CustomerMetadataProperties"]["evalops:execution-id"] == EXECUTION
    statistics = Path(request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
    assert statistics.read_bytes() == (run_dirs.input_root / SUMMARIES / "llama-tuned" / SUMMARY_FILE).read_bytes()

    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert (registration.registry, registration.model_package_version) == ("directory", 2)
    assert registration.model_package_arn == (group_dir / "2.json").resolve().as_uri()


def test_a_bedrock_winner_is_registered_as_a_reference(
    config: Config, run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALOPS_ARTIFACTS_URI", raising=False)
    chosen = decision(winner="titan")
    chosen.candidates.append(verdict("titan", 0.9, 1))
    run_dirs.put_input(DECISION, DECISION_FILE, chosen.model_dump_json())
    titan = make_summary(
        "titan", ModelArtifact(provider="bedrock", model_id="amazon.titan-text-express-v1"), {"f": 0.9}, EXECUTION
    )
    run_dirs.put_input(f"{SUMMARIES}/titan", SUMMARY_FILE, titan.model_dump_json())
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION, local_registry=True)) == 0

    request = json.loads((run_dirs.registry / GROUP / "1.json").read_text())["request"]
    assert "InferenceSpecification" not in request
    assert request["SourceUri"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"
    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert not registration.deployable and registration.image_uri is None


def test_an_existing_endpoint_winner_points_at_the_endpoint(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    chosen = decision(winner="existing")
    run_dirs.put_input(DECISION, DECISION_FILE, chosen.model_dump_json())
    existing = make_summary(
        "existing", ModelArtifact(provider="endpoint", endpoint_name="team-llm-prod"), {"f": 0.8}, EXECUTION
    )
    run_dirs.put_input(f"{SUMMARIES}/existing", SUMMARY_FILE, existing.model_dump_json())
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)) == 0
    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert registration.source_uri == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/team-llm-prod"
    package = aws.describe_model_package(ModelPackageName=registration.model_package_arn)
    assert "InferenceSpecification" not in package
    assert package["CustomerMetadataProperties"]["evalops:provider"] == "endpoint"


def test_metadata_text_keeps_sagemakers_character_set_and_length() -> None:
    assert metadata_text("a, b; (c) <d>\n e", 256) == "a b c d e"
    assert metadata_text("x" * 300, 256) == "x" * 256
    assert metadata_text("!!!", 256) == "-"


def test_metadata_carries_each_metrics_interval_and_record_count() -> None:
    from step_code.uncertainty import mean_interval

    interval = mean_interval([1.0] * 37 + [0.0] * 3)
    summary = make_summary("llama-tuned", artifact("llama-tuned", finetuned=True), {"factual_knowledge": 0.925}, "e")
    summary = summary.model_copy(update={"intervals": {"factual_knowledge": interval}})
    chosen = decision()
    winner = chosen.candidates[0].model_copy(update={"weighted_interval": interval})

    metadata = register.customer_metadata(summary, chosen, winner, execution_id="e", config_sha256="0" * 64)

    expected = "0.7961 to 0.9843 n=40 clopper-pearson conf=0.95"
    assert metadata["metric-interval:factual_knowledge"] == expected
    assert metadata["evalops:weighted-score-interval"] == expected
    for value in metadata.values():
        assert METADATA_PATTERN.match(value), value


def test_the_winner_gets_a_model_card_linked_to_its_package(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    from step_code.uncertainty import mean_interval

    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    stage(run_dirs, decision())
    summary_path = run_dirs.input_root / SUMMARIES / "llama-tuned" / SUMMARY_FILE
    summary = json.loads(summary_path.read_text())
    summary["intervals"] = {"factual_knowledge": mean_interval([1.0] * 37 + [0.0] * 3).model_dump()}
    summary_path.write_text(json.dumps(summary))
    argv = run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)

    assert register.main(argv) == 0

    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert registration.model_card_name == f"{GROUP}-v1"
    card = aws.describe_model_card(ModelCardName=registration.model_card_name)
    assert card["ModelCardArn"] == registration.model_card_arn and card["ModelCardStatus"] == "Draft"
    content = json.loads(card["Content"])
    assert content["model_package_details"] == {"model_package_arn": registration.model_package_arn}
    assert content["intended_uses"]["purpose_of_model"] == (config.pipeline.description or config.pipeline.name)
    [evaluation] = content["evaluation_details"]
    [metric] = evaluation["metric_groups"][0]["metric_data"]
    assert metric["name"] == "factual_knowledge" and metric["value"] == pytest.approx(0.81)
    assert "95% interval [0.7961, 0.9843] over 40 records (clopper-pearson)" in metric["notes"]
    assert f"sha256 {'ab' * 32}" in evaluation["datasets"][0]
    assert evaluation["metadata"]["algorithm"] == config.algorithms[0].algorithm
    assert content["additional_information"]["custom_details"]["decision"] == REASON

    # A retried step finds the card and updates it (moto ignores CreateModelPackage's ClientToken, so the
    # retry is made on the card alone).
    from step_code import model_card

    content["additional_information"]["custom_details"]["decision"] = "retried"
    assert model_card.upsert_in_sagemaker(aws, registration.model_card_name, content) == registration.model_card_arn
    versions = aws.list_model_card_versions(ModelCardName=registration.model_card_name)["ModelCardVersionSummaryList"]
    assert len(versions) == 2
    updated = json.loads(aws.describe_model_card(ModelCardName=registration.model_card_name)["Content"])
    assert updated["additional_information"]["custom_details"]["decision"] == "retried"
