"""Fine-tune a JumpStart model as a SageMaker training job and record where the trained artifact is.

Two halves: `jumpstart_launcher` resolves the estimator from JumpStart's specs (which only AWS serves), and
`run_training` starts or adopts the job, waits for it and reads the result back (plain SageMaker API calls).
The job is named per execution, so a re-run never collides with an earlier run's job, and a retried step
adopts the job its earlier attempt started instead of failing on the name.

The training data's content is recorded as a digest of the channels' objects (key, size, ETag), so the
identity of the fine-tuned model changes when the data behind an unchanged location does.

A run whose training identity (base model id and the version `*` resolves to, data locations and digest,
hyperparameters, training instances) equals that of a Completed job of an earlier run of this pipeline
and model takes that job's trained model instead of training again: the trained artifact, and so the
kept endpoint deployed from it, stays the same while nothing it was trained from changed. Without a data
digest (the channels cannot be listed) every run trains.

Warm pools: `finetuning.parameters.keep_alive_period_in_seconds`, or when a fine-tuning sets none the
environment's `warm_pool_keep_alive_seconds`, becomes the job's ResourceConfig.KeepAlivePeriodInSeconds;
the plan runs fine-tunings that can share a pool one after another
(`pipeline_definitions/planning/warm_pools.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code import storage
from step_code.aws_resources import (
    TRAINING_JOB_WAIT,
    ControlPlaneError,
    WaitSpec,
    accepts_eula,
    describe_or_none,
    execution_role_arn,
    owned_by,
    paginate,
    resource_name,
    resource_tags,
    resource_tags_of,
    run_artifacts_uri,
    sagemaker_client,
    sdk_session,
    tags_by_key,
    wait_for,
)
from step_code.contract.config import Config, FinetuningConfig, ModelConfig, canonical_digest
from step_code.contract.files import FINETUNE_FILE
from step_code.contract.job_env import DATA_URI_ENV
from step_code.contract.locations import is_s3
from step_code.contract.naming import EXECUTION_SUFFIX_LENGTH
from step_code.contract.results import FinetuneResult
from step_code.contract.tags import MANAGED_BY, TAG_MANAGED_BY, TAG_MODEL, TAG_PIPELINE, TAG_TRAINING_IDENTITY
from step_code.resource_guardrails import (
    job_guardrails,
    training_estimator_settings,
    warm_pool_keep_alive,
    with_extra_tags,
)
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


def training_data_digest(channels: dict[str, str], client: Any | None = None) -> str | None:
    """sha256 over every object of the channels (channel, key, size, ETag); None when they cannot be listed.

    ETags change with the content, so new data under the same location is a new digest without reading it.
    """
    s3 = client or storage.s3_client()
    digest = hashlib.sha256()
    try:
        for channel, uri in sorted(channels.items()):
            bucket, prefix = storage.split_s3(uri)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    digest.update(f"{channel}\0{item['Key']}\0{item['Size']}\0{item['ETag']}\n".encode())
    except (ClientError, BotoCoreError) as exc:
        logger.warning("cannot list the training data to record its digest (%s); its location alone keys it", exc)
        return None
    return digest.hexdigest()


def resolved_training_version(model: ModelConfig, session: Any) -> str:
    """The JumpStart version the model's `model_version` (often `*`) resolves to for training."""
    from sagemaker.jumpstart.enums import JumpStartScriptScope
    from sagemaker.jumpstart.utils import verify_model_region_and_return_specs

    try:
        specs = verify_model_region_and_return_specs(
            model_id=model.model_id,
            version=model.model_version,
            scope=JumpStartScriptScope.TRAINING,
            region=session.boto_region_name,
            sagemaker_session=session,
        )
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        raise _unresolvable(model, session, exc) from None
    return str(specs.version)


def _unresolvable(model: ModelConfig, session: Any, exc: Exception) -> ControlPlaneError:
    return ControlPlaneError(
        f"cannot resolve JumpStart model {model.model_id!r} version {model.model_version!r} for training "
        f"in {session.boto_region_name}: {exc}"
    )


def training_identity(model: ModelConfig, finetuning: FinetuningConfig, version: str, data_digest: str) -> str:
    """What the trained weights depend on; equal identities may share one trained model."""
    return canonical_digest(
        {"model_id": model.model_id, "version": version, "inputs": finetuning.training_inputs(), "data": data_digest}
    )


def find_trained(client: Any, job_name: str, model: ModelConfig, pipeline: str, identity: str) -> str | None:
    """A Completed training job of an earlier run of this pipeline and model with this training identity."""
    stem = job_name[:-EXECUTION_SUFFIX_LENGTH]
    jobs = paginate(client, "list_training_jobs", "TrainingJobSummaries", NameContains=stem, StatusEquals="Completed")
    for job in sorted(jobs, key=lambda item: item["CreationTime"], reverse=True):
        if not job["TrainingJobName"].startswith(stem):
            continue
        tags = resource_tags_of(client, job["TrainingJobArn"])
        if (
            tags.get(TAG_MANAGED_BY) == MANAGED_BY
            and tags.get(TAG_MODEL) == model.name
            and tags.get(TAG_PIPELINE) == pipeline
            and tags.get(TAG_TRAINING_IDENTITY) == identity
        ):
            return str(job["TrainingJobName"])
    return None


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
            keep_alive_period_in_seconds=warm_pool_keep_alive(guardrails, parameters.keep_alive_period_in_seconds),
            tags=with_extra_tags(tags, guardrails),
            sagemaker_session=session,
            **training_estimator_settings(guardrails, parameters.instance_type),
        )
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        raise _unresolvable(model, session, exc) from None

    def launch(channels: dict[str, str], job_name: str) -> None:
        # The EULA travels in `environment`; the SDK refuses it given a second time as fit(accept_eula=...).
        # JumpStart adds its `model` channel to the dict it is given: it gets a copy.
        estimator.fit(dict(channels), wait=False, logs=False, job_name=job_name)

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


def finetune_result(
    client: Any, model: ModelConfig, description: dict[str, Any], training_data_sha256: str | None = None
) -> FinetuneResult:
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
        training_data_sha256=training_data_sha256,
    )


def finetune(config: Config, model: ModelConfig, execution_id: str, output_dir: Path) -> FinetuneResult:
    finetuning = model.finetuning
    if finetuning is None or not model.provider.finetunable:
        raise ControlPlaneError(f"model {model.name!r} has no finetuning settings for a jumpstart model")
    job_name = resource_name(config, model, execution_id)
    channels = training_channels(model, finetuning, os.environ.get(DATA_URI_ENV))
    session = sdk_session()
    data_digest = training_data_digest(channels)
    tags = resource_tags(config, model, execution_id)
    client = sagemaker_client()
    earlier = None
    if data_digest is not None:
        identity = training_identity(model, finetuning, resolved_training_version(model, session), data_digest)
        tags.append({"Key": TAG_TRAINING_IDENTITY, "Value": identity})
        earlier = find_trained(client, job_name, model, tags_by_key(tags)[TAG_PIPELINE], identity)
    if earlier is not None:
        logger.info("training job %s was trained from the same inputs; using its model, not training again", earlier)
        description = dict(client.describe_training_job(TrainingJobName=earlier))
    else:
        launch = jumpstart_launcher(
            model,
            finetuning,
            role=execution_role_arn(),
            output_path=run_artifacts_uri(execution_id, "finetune", model.name),
            tags=tags,
            session=session,
        )
        description = run_training(
            client, launch, job_name=job_name, channels=channels, model=model, execution_id=execution_id
        )
    result = finetune_result(client, model, description, data_digest)
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
