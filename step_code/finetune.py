"""Fine-tune a JumpStart model as a SageMaker training job and record where the trained artifact is.

Two halves: `jumpstart_launcher` resolves the estimator from JumpStart's specs (which only AWS serves), and
`run_training` starts or adopts the job, waits for it and reads the result back (plain SageMaker API calls).
The job is named per execution, so a re-run never collides with an earlier run's job, and a retried step
adopts the job its earlier attempt started instead of failing on the name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code.aws_resources import (
    TRAINING_JOB_WAIT,
    ControlPlaneError,
    WaitSpec,
    accepts_eula,
    describe_or_none,
    execution_role_arn,
    owned_by,
    resource_name,
    resource_tags,
    resource_tags_of,
    run_artifacts_uri,
    sagemaker_client,
    sdk_session,
    wait_for,
)
from step_code.contract.config import Config, FinetuningConfig, ModelConfig
from step_code.contract.files import FINETUNE_FILE
from step_code.contract.job_env import DATA_URI_ENV
from step_code.contract.locations import is_s3
from step_code.contract.results import FinetuneResult
from step_code.resource_guardrails import job_guardrails, training_estimator_settings, with_extra_tags
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, run_step, write_model

logger = logging.getLogger("evalops.finetune")

TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"
# The tag JumpStart puts on its jobs with the version "*" resolved to.
JUMPSTART_VERSION_TAG = "sagemaker-sdk:jumpstart-model-version"
# Hyperparameters the SDK adds for its own script plumbing, not settings of the model's training.
SDK_HYPERPARAMETER_PREFIX = "sagemaker_"

# Starts the training job named by the second argument on the channels of the first, without waiting.
Launcher = Callable[[dict[str, str], str], None]


def _channel_uri(path: str, key: str, data_uri: str | None) -> str:
    if is_s3(path):
        return path
    if not data_uri:
        raise ControlPlaneError(
            f"{key} {path!r} is relative to the data bucket; set {DATA_URI_ENV} to the s3:// prefix it is under"
        )
    return f"{data_uri.rstrip('/')}/{path.lstrip('/')}"


def training_channels(model: ModelConfig, finetuning: FinetuningConfig, data_uri: str | None) -> dict[str, str]:
    """The job's input channels: `training`, and `validation` when the config names validation data."""
    key = f"models[{model.name}].finetuning"
    channels = {TRAINING_CHANNEL: _channel_uri(finetuning.train_data_path, f"{key}.train_data_path", data_uri)}
    if finetuning.validation_data_path:
        channels[VALIDATION_CHANNEL] = _channel_uri(
            finetuning.validation_data_path, f"{key}.validation_data_path", data_uri
        )
    return channels


def jumpstart_launcher(
    model: ModelConfig,
    finetuning: FinetuningConfig,
    *,
    role: str,
    output_path: str,
    tags: list[dict[str, str]],
    session: Any,
) -> Launcher:
    """A JumpStart estimator for the model, resolved now so an unknown model id fails before anything starts."""
    from sagemaker.jumpstart.estimator import JumpStartEstimator

    parameters = finetuning.parameters
    guardrails = job_guardrails()
    try:
        estimator = JumpStartEstimator(
            model_id=model.model_id,
            model_version=model.model_version,
            role=role,
            instance_type=parameters.instance_type,
            instance_count=parameters.num_instances,
            hyperparameters=parameters.hyperparameters() or None,
            environment={"accept_eula": "true"} if accepts_eula(model) else None,
            output_path=output_path,
            max_run=parameters.max_run_seconds,
            tags=with_extra_tags(tags, guardrails),
            sagemaker_session=session,
            **training_estimator_settings(guardrails, parameters.instance_type),
        )
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        raise ControlPlaneError(
            f"cannot resolve JumpStart model {model.model_id!r} version {model.model_version!r} for training "
            f"in {session.boto_region_name}: {exc}"
        ) from None

    def launch(channels: dict[str, str], job_name: str) -> None:
        # The EULA travels in `environment`; the SDK refuses it given a second time as fit(accept_eula=...).
        estimator.fit(channels, wait=False, logs=False, job_name=job_name)

    return launch


def run_training(
    client: Any,
    launch: Launcher,
    *,
    job_name: str,
    channels: dict[str, str],
    model: ModelConfig,
    execution_id: str,
    wait: WaitSpec = TRAINING_JOB_WAIT,
) -> dict[str, Any]:
    """Start the job (or adopt this run's earlier attempt at it), wait until it completes, return its description."""
    existing = describe_or_none(client.describe_training_job, TrainingJobName=job_name)
    if existing is None:
        logger.info("starting training job %s on %s", job_name, channels)
        launch(channels, job_name)
    elif owned_by(resource_tags_of(client, existing["TrainingJobArn"]), model, execution_id):
        logger.info("training job %s was started by an earlier attempt of this step; waiting for it", job_name)
    else:
        raise ControlPlaneError(f"training job {job_name} already exists and was not started by this run")
    return dict(wait_for(job_name, lambda: client.describe_training_job(TrainingJobName=job_name), wait))


def _plain(value: str) -> str:
    """The SDK sends script-mode hyperparameters JSON-encoded (`"1"` for 1); record the value itself."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def finetune_result(client: Any, model: ModelConfig, description: dict[str, Any]) -> FinetuneResult:
    if not model.model_id:
        raise ControlPlaneError(f"model {model.name!r} has no model_id")
    artifacts = str(description["ModelArtifacts"]["S3ModelArtifacts"])
    # Uncompressed output is a prefix; SageMaker hosting wants it to end with "/", and the "/" is how
    # deploy and register tell an S3 prefix from a model.tar.gz.
    if description.get("OutputDataConfig", {}).get("CompressionType") == "NONE" and not artifacts.endswith("/"):
        artifacts += "/"
    tags = resource_tags_of(client, description["TrainingJobArn"])
    hyperparameters = {
        key: _plain(str(value))
        for key, value in sorted(description.get("HyperParameters", {}).items())
        if not key.startswith(SDK_HYPERPARAMETER_PREFIX)
    }
    return FinetuneResult(
        model=model.name,
        training_job_name=description["TrainingJobName"],
        model_data_url=artifacts,
        base_model_id=model.model_id,
        base_model_version=tags.get(JUMPSTART_VERSION_TAG, model.model_version),
        hyperparameters=hyperparameters,
    )


def finetune(config: Config, model: ModelConfig, execution_id: str, output_dir: Path) -> FinetuneResult:
    finetuning = model.finetuning
    if finetuning is None or not model.provider.finetunable:
        raise ControlPlaneError(f"model {model.name!r} has no finetuning settings for a jumpstart model")
    job_name = resource_name(config, model, execution_id)
    channels = training_channels(model, finetuning, os.environ.get(DATA_URI_ENV))
    launch = jumpstart_launcher(
        model,
        finetuning,
        role=execution_role_arn(),
        output_path=run_artifacts_uri(execution_id, "finetune", model.name),
        tags=resource_tags(config, model, execution_id),
        session=sdk_session(),
    )
    client = sagemaker_client()
    description = run_training(
        client, launch, job_name=job_name, channels=channels, model=model, execution_id=execution_id
    )
    result = finetune_result(client, model, description)
    write_model(output_dir, FINETUNE_FILE, result)
    logger.info("training job %s produced %s", result.training_job_name, result.model_data_url)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.finetune", __doc__, model=True, execution_id=True)
    args = parser.parse_args(argv)

    def body() -> None:
        config = read_config(args.config)
        finetune(config, config_model(config, args.model, args.config), args.execution_id, args.output_dir)

    return run_step("finetune", body)


if __name__ == "__main__":
    raise SystemExit(main())
