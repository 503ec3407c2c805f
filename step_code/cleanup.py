"""Delete the endpoint, endpoint config and model a deploy step created, right after their evaluation.

Idempotent: what is already gone counts as deleted. Never deletes an endpoint the run did not create
(`deployment.created` False, or a model of provider `endpoint`), nor a resource whose tags do not say
this platform manages it for this model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from step_code.aws_resources import ControlPlaneError, describe_or_none, is_missing, resource_tags_of, sagemaker_client
from step_code.contract.config import ModelConfig
from step_code.contract.files import CLEANUP_FILE, DEPLOYMENT_FILE
from step_code.contract.results import CleanupResult, Deployment
from step_code.contract.tags import MANAGED_BY, TAG_MANAGED_BY, TAG_MODEL, TAG_PROVIDER
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, read_model, run_step, write_model

logger = logging.getLogger("evalops.cleanup")


def _managed_for(tags: dict[str, str], model: ModelConfig) -> bool:
    return (
        tags.get(TAG_MANAGED_BY) == MANAGED_BY
        and tags.get(TAG_MODEL) == model.name
        and tags.get(TAG_PROVIDER) != "endpoint"
    )


# What a deployment creates, in deletion order: ARN path, boto3 operation suffix, name parameter, ARN key.
# Deleting an endpoint does not delete its config or model; each is removed on its own.
_RESOURCES = (
    ("endpoint", "endpoint", "EndpointName", "EndpointArn"),
    ("endpoint-config", "endpoint_config", "EndpointConfigName", "EndpointConfigArn"),
    ("model", "model", "ModelName", "ModelArn"),
)


def _delete(
    client: Any, resource: tuple[str, str, str, str], name: str, model: ModelConfig, result: CleanupResult
) -> None:
    kind, operation, parameter, arn_key = resource
    label = f"{kind}/{name}"
    description = describe_or_none(getattr(client, f"describe_{operation}"), **{parameter: name})
    if description is None:
        result.already_absent.append(label)
        return
    if not _managed_for(resource_tags_of(client, description[arn_key]), model):
        logger.warning("not deleting %s: its tags do not say evalops created it for %s", label, model.name)
        result.not_managed.append(label)
        return
    try:
        getattr(client, f"delete_{operation}")(**{parameter: name})
    except ClientError as exc:
        if not is_missing(exc):
            raise
        result.already_absent.append(label)
        return
    logger.info("deleted %s", label)
    result.deleted.append(label)


def cleanup(client: Any, model: ModelConfig, deployment: Deployment) -> CleanupResult:
    if deployment.model != model.name:
        raise ControlPlaneError(f"deployment.json is for model {deployment.model!r}, not {model.name!r}")
    result = CleanupResult(model=model.name, endpoint_name=deployment.endpoint_name)
    if model.provider.existing_endpoint or deployment.artifact.provider == "endpoint":
        result.skipped_reason = "the endpoint belongs to the user (model_provider endpoint)"
    elif not deployment.created:
        result.skipped_reason = "the deploy step reused an endpoint it did not create"
    if result.skipped_reason:
        logger.info("not deleting %s: %s", deployment.endpoint_name, result.skipped_reason)
        return result

    names = (deployment.endpoint_name, deployment.endpoint_config_name, deployment.model_name)
    for resource, name in zip(_RESOURCES, names, strict=True):
        if name:
            _delete(client, resource, name, model, result)
    return result


def run_cleanup(model: ModelConfig, deployment_dir: Path, output_dir: Path) -> CleanupResult:
    deployment = read_model(deployment_dir / DEPLOYMENT_FILE, Deployment)
    result = cleanup(sagemaker_client(), model, deployment)
    write_model(output_dir, CLEANUP_FILE, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.cleanup", __doc__, model=True)
    parser.add_argument("--deployment-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    def body() -> None:
        config = read_config(args.config)
        run_cleanup(config_model(config, args.model, args.config), args.deployment_dir, args.output_dir)

    return run_step("cleanup", body)


if __name__ == "__main__":
    raise SystemExit(main())
