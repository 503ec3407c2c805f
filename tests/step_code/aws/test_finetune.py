"""The finetune step: channels, a training job run and recorded against moto, adoption and refusals.

`main` runs end to end with the SDK resolving JumpStart from a local catalogue (`jumpstart_specs.py`);
the lower-level tests launch through the SDK's plain Estimator, the same `Launcher` shape.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import sagemaker
from sagemaker.estimator import Estimator

from step_code import finetune
from step_code.aws_resources import ControlPlaneError, resource_name, resource_tags, run_artifacts_uri, tags_by_key
from step_code.contract.config import Config
from step_code.contract.files import FINETUNE, FINETUNE_FILE
from step_code.contract.job_env import WARM_POOL_KEEP_ALIVE_ENV
from step_code.contract.results import FinetuneResult
from step_code.finetune import Launcher, finetune_result, run_training, training_channels
from step_code.step_io import write_model
from tests.step_code.aws import jumpstart_specs
from tests.step_code.aws.conftest import CONFIG, DATA_URI, PREFIX, ROLE_ARN, RUN_ARTIFACTS, RunDirs, planned_step

EXECUTION = "f00dfeed0001"
TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.0-gpu"


def sdk_launcher(config: Config, hyperparameters: dict[str, Any], tags: list[dict[str, Any]]) -> Launcher:
    estimator = Estimator(
        image_uri=TRAINING_IMAGE,
        role=ROLE_ARN,
        instance_count=1,
        instance_type="ml.m5.xlarge",
        output_path=run_artifacts_uri(EXECUTION, "finetune", "llama-tuned"),
        hyperparameters=hyperparameters,
        tags=tags,
        sagemaker_session=sagemaker.Session(boto_session=boto3.Session()),
    )

    def launch(channels: dict[str, str], job_name: str) -> None:
        estimator.fit(channels, wait=False, logs=False, job_name=job_name)

    return launch


def refuse_launch(channels: dict[str, str], job_name: str) -> None:
    raise AssertionError("an existing job must be adopted, not started again")


def test_channels_resolve_relative_paths_under_the_data_uri(config: Config) -> None:
    tuned = config.model("llama-tuned")
    assert tuned.finetuning is not None
    assert training_channels(tuned, tuned.finetuning, DATA_URI + "/") == {
        "training": f"{DATA_URI}/train",
        "validation": "s3://evalops-test-data/validation/",
    }
    with pytest.raises(ControlPlaneError) as raised:
        training_channels(tuned, tuned.finetuning, None)
    assert str(raised.value) == (
        "models[llama-tuned].finetuning.train_data_path 'train' is relative to the data bucket; "
        "set EVALOPS_DATA_URI to the s3:// prefix it is under"
    )


def test_runs_the_training_job_and_records_its_artifact(aws: Any, config: Config, tmp_path: Path) -> None:
    tuned = config.model("llama-tuned")
    assert tuned.finetuning is not None
    job_name = resource_name(config, tuned, EXECUTION)
    channels = training_channels(tuned, tuned.finetuning, DATA_URI)
    tags = resource_tags(config, tuned, EXECUTION)
    launch = sdk_launcher(config, tuned.finetuning.parameters.hyperparameters(), tags)

    description = run_training(aws, launch, job_name=job_name, channels=channels, model=tuned, execution_id=EXECUTION)
    assert description["TrainingJobStatus"] == "Completed"
    job = aws.describe_training_job(TrainingJobName=job_name)
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]} == channels
    assert tags_by_key(aws.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]) == tags_by_key(tags)

    result = finetune_result(aws, tuned, description)
    assert result == FinetuneResult(
        model="llama-tuned",
        training_job_name=f"{PREFIX}llama-tuned-eval-{EXECUTION}",
        model_data_url=f"{RUN_ARTIFACTS}/{EXECUTION}/finetune/llama-tuned/{job_name}/output/model.tar.gz",
        base_model_id="meta-textgeneration-llama-2-7b",
        base_model_version="*",
        hyperparameters={"epoch": "1", "instruction_tuned": "True"},
    )
    write_model(tmp_path, FINETUNE_FILE, result)
    assert FinetuneResult.model_validate_json((tmp_path / FINETUNE_FILE).read_text()) == result


def test_a_retried_step_adopts_its_job_and_a_foreign_job_is_refused(aws: Any, config: Config) -> None:
    tuned = config.model("llama-tuned")
    assert tuned.finetuning is not None
    job_name = resource_name(config, tuned, EXECUTION)
    channels = training_channels(tuned, tuned.finetuning, DATA_URI)
    launch = sdk_launcher(config, {}, resource_tags(config, tuned, EXECUTION))
    run_training(aws, launch, job_name=job_name, channels=channels, model=tuned, execution_id=EXECUTION)

    again = run_training(aws, refuse_launch, job_name=job_name, channels=channels, model=tuned, execution_id=EXECUTION)
    assert again["TrainingJobName"] == job_name

    other_run = "0123456789ab"
    with pytest.raises(
        ControlPlaneError, match=f"training job {job_name} already exists and was not started by this run"
    ):
        run_training(aws, refuse_launch, job_name=job_name, channels=channels, model=tuned, execution_id=other_run)


def test_uncompressed_output_is_recorded_as_a_prefix(aws: Any, config: Config) -> None:
    tuned = config.model("llama-tuned")
    job_name = resource_name(config, tuned, EXECUTION)
    launch = sdk_launcher(config, {}, resource_tags(config, tuned, EXECUTION))
    description = run_training(
        aws, launch, job_name=job_name, channels={"training": DATA_URI}, model=tuned, execution_id=EXECUTION
    )
    # moto ignores CompressionType; a real job with JumpStart's disable_output_compression reports NONE.
    description["OutputDataConfig"]["CompressionType"] = "NONE"
    description["ModelArtifacts"]["S3ModelArtifacts"] = f"{RUN_ARTIFACTS}/job/output/model"
    assert finetune_result(aws, tuned, description).model_data_url == f"{RUN_ARTIFACTS}/job/output/model/"


def test_main_runs_a_jumpstart_training_job(
    aws: Any, config: Config, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    assert finetune.main(run_dirs.argv(planned_step(config, "Finetune-llama-tuned"), EXECUTION)) == 0

    recorded = FinetuneResult.model_validate(run_dirs.output(FINETUNE, FINETUNE_FILE))
    job_name = f"{PREFIX}llama-tuned-eval-{EXECUTION}"
    output_path = f"{RUN_ARTIFACTS}/{EXECUTION}/finetune/llama-tuned"
    assert recorded == FinetuneResult(
        model="llama-tuned",
        training_job_name=job_name,
        model_data_url=f"{output_path}/{job_name}/output/model.tar.gz",
        base_model_id=jumpstart_specs.MODEL_ID,
        base_model_version=jumpstart_specs.VERSION,
        hyperparameters={"epoch": "1", "instruction_tuned": "True", "learning_rate": "0.0001"},
    )
    job = aws.describe_training_job(TrainingJobName=job_name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == jumpstart_specs.TRAINING_IMAGE
    assert job["RoleArn"] == ROLE_ARN and job["OutputDataConfig"]["S3OutputPath"] == output_path
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert channels["training"]["S3Uri"] == f"{DATA_URI}/train"
    assert channels["validation"]["S3Uri"] == "s3://evalops-test-data/validation/"
    # JumpStart adds the base weights as the `model` channel; accept_eula became its ModelAccessConfig.
    assert channels["model"]["ModelAccessConfig"] == {"AcceptEula": True}
    tags = tags_by_key(aws.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"])
    assert tags["evalops:execution-id"] == EXECUTION and tags["evalops:model"] == "llama-tuned"


def test_main_fails_in_one_line_when_jumpstart_cannot_be_resolved(
    aws: Any, config: Config, run_dirs: RunDirs, no_jumpstart_catalogue: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert finetune.main(run_dirs.argv(planned_step(config, "Finetune-llama-tuned"), EXECUTION)) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "finetune: error: cannot resolve JumpStart model 'meta-textgeneration-llama-2-7b' version '*' for training"
    )
    assert "\n" not in error
    assert aws.list_training_jobs()["TrainingJobSummaries"] == []
    assert not (run_dirs.output_root / FINETUNE / FINETUNE_FILE).exists()


def test_main_names_the_missing_data_location(
    aws: Any, config: Config, run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EVALOPS_DATA_URI")
    assert finetune.main(run_dirs.argv(planned_step(config, "Finetune-llama-tuned"), EXECUTION)) == 1
    assert "train_data_path 'train' is relative to the data bucket" in capsys.readouterr().err


def test_main_refuses_a_model_without_finetuning(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = run_dirs.argv(planned_step(config, "Finetune-llama-tuned"), EXECUTION)
    argv[argv.index("--model") + 1] = "llama-base"
    assert finetune.main(argv) == 1
    assert "model 'llama-base' has no finetuning settings" in capsys.readouterr().err


def test_the_training_data_digest_follows_the_content_not_only_the_location(aws: Any) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-test-data")
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/data.jsonl", Body=b'{"text": "one"}\n')
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/template.json", Body=b"{}")
    channels = {"training": f"{DATA_URI}/train"}
    first = finetune.training_data_digest(channels)
    assert first is not None and finetune.training_data_digest(channels) == first
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/data.jsonl", Body=b'{"text": "two"}\n')
    assert finetune.training_data_digest(channels) not in (None, first)
    # A location that cannot be listed leaves the digest out; the location still keys the model.
    assert finetune.training_data_digest({"training": "s3://no-such-bucket/train"}) is None


def test_main_sets_the_warm_pool_keep_alive_and_records_the_data_digest(
    aws: Any, config: Config, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-test-data")
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/data.jsonl", Body=b'{"text": "one"}\n')
    data = copy.deepcopy(CONFIG)
    data["models"][2]["finetuning"]["parameters"]["keep_alive_period_in_seconds"] = 900
    run_dirs.put_input("config", "config.json", json.dumps(data))
    tuned = Config.model_validate(data)
    assert finetune.main(run_dirs.argv(planned_step(tuned, "Finetune-llama-tuned"), EXECUTION)) == 0

    job = aws.describe_training_job(TrainingJobName=f"{PREFIX}llama-tuned-eval-{EXECUTION}")
    assert job["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900
    assert "keep_alive_period_in_seconds" not in job["HyperParameters"]
    recorded = FinetuneResult.model_validate(run_dirs.output(FINETUNE, FINETUNE_FILE))
    assert recorded.training_data_sha256 == finetune.training_data_digest({"training": f"{DATA_URI}/train"})
    assert recorded.training_data_sha256 is not None


@pytest.mark.parametrize(("configured", "expected"), [(None, 600), (900, 900), (0, 0)])
def test_the_environments_warm_pool_default_applies_where_the_fine_tuning_sets_none(
    aws: Any,
    run_dirs: RunDirs,
    jumpstart_catalogue: None,
    monkeypatch: pytest.MonkeyPatch,
    configured: int | None,
    expected: int,
) -> None:
    # As the renderer sets it on the Finetune step's job from environments.yaml's warm_pool_keep_alive_seconds.
    monkeypatch.setenv(WARM_POOL_KEEP_ALIVE_ENV, "600")
    data = copy.deepcopy(CONFIG)
    parameters = data["models"][2]["finetuning"]["parameters"]
    parameters.pop("keep_alive_period_in_seconds", None)
    if configured is not None:
        parameters["keep_alive_period_in_seconds"] = configured
    run_dirs.put_input("config", "config.json", json.dumps(data))
    tuned = Config.model_validate(data)
    assert finetune.main(run_dirs.argv(planned_step(tuned, "Finetune-llama-tuned"), EXECUTION)) == 0

    job = aws.describe_training_job(TrainingJobName=f"{PREFIX}llama-tuned-eval-{EXECUTION}")
    assert job["ResourceConfig"].get("KeepAlivePeriodInSeconds") == expected


def test_a_later_run_with_the_same_training_inputs_takes_the_trained_model(
    aws: Any, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-test-data")
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/data.jsonl", Body=b'{"text": "one"}\n')
    data = copy.deepcopy(CONFIG)

    def run(execution_id: str) -> FinetuneResult:
        run_dirs.put_input("config", "config.json", json.dumps(data))
        step = planned_step(Config.model_validate(data), "Finetune-llama-tuned")
        assert finetune.main(run_dirs.argv(step, execution_id)) == 0
        return FinetuneResult.model_validate(run_dirs.output(FINETUNE, FINETUNE_FILE))

    def jobs() -> list[str]:
        return sorted(job["TrainingJobName"] for job in aws.list_training_jobs()["TrainingJobSummaries"])

    first = run("run000000001")
    identity = tags_by_key(
        aws.list_tags(ResourceArn=aws.describe_training_job(TrainingJobName=first.training_job_name)["TrainingJobArn"])[
            "Tags"
        ]
    )["evalops:training-identity"]
    assert len(identity) == 64
    assert run("run000000002") == first
    assert jobs() == [first.training_job_name]

    # New data under the same location: trained again.
    s3.put_object(Bucket="evalops-test-data", Key="datasets/train/data.jsonl", Body=b'{"text": "two"}\n')
    retrained = run("run000000003")
    assert retrained.training_job_name == f"{PREFIX}llama-tuned-eval-run000000003"
    # A changed hyperparameter: trained again.
    data["models"][2]["finetuning"]["parameters"]["epoch"] = 2
    assert run("run000000004").training_job_name == f"{PREFIX}llama-tuned-eval-run000000004"
    assert len(jobs()) == 3
