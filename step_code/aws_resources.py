"""What the control-plane steps (finetune, deploy, cleanup, register) share: names, tags, paging, waiting.

Every SageMaker resource a run creates carries the tags of `step_code/contract/tags.py`. The safety-net Lambda
(`stacks/safety_net_lambda/index.py`, which cannot import this package) matches on the same keys, and a
test keeps the two lists equal. A run is identified by its pipeline execution id: the pipeline passes it
as `--execution-id`, and it is the last path segment of the execution ARN in EventBridge events.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from step_code.contract.config import Config, ModelConfig
from step_code.contract.job_env import (
    ARTIFACTS_URI_ENV,
    DEFAULT_RESOURCE_PREFIX,
    EXECUTION_ARN_ENV,
    RESOURCE_PREFIX_ENV,
    ROLE_ARN_ENV,
)
from step_code.contract.locations import is_s3
from step_code.contract.naming import deployed_pipeline_name, resource_base, run_scoped_name
from step_code.contract.tags import (
    MANAGED_BY,
    TAG_EXECUTION_ARN,
    TAG_EXECUTION_ID,
    TAG_MANAGED_BY,
    TAG_MODEL,
    TAG_PIPELINE,
    TAG_PROVIDER,
)

# Characters SageMaker accepts in tag values.
_TAG_VALUE_DISALLOWED = re.compile(r"[^\w\s_.:/=+\-@]")
_TAG_VALUE_MAX = 256


class ControlPlaneError(Exception):
    """A step cannot go on; the message is the one line the step prints before exiting 1."""


class ResourceFailed(ControlPlaneError):
    """A training job or endpoint reached a terminal state other than the one waited for."""


def resource_prefix() -> str:
    return os.environ.get(RESOURCE_PREFIX_ENV) or DEFAULT_RESOURCE_PREFIX


def resource_name(config: Config, model: ModelConfig, execution_id: str) -> str:
    """The name of everything one run creates for one model: training job, model, endpoint config, endpoint.

    SageMaker keeps a namespace per resource type, so one name serves all four; the execution suffix makes
    it unique per run, which is what lets a re-run start while an earlier run's endpoint still exists.
    """
    return run_scoped_name(resource_prefix(), resource_base(config.pipeline.name, model), execution_id)


def _tag_value(value: str) -> str:
    return _TAG_VALUE_DISALLOWED.sub("-", value)[:_TAG_VALUE_MAX]


def resource_tags(config: Config, model: ModelConfig, execution_id: str) -> list[dict[str, str]]:
    """Tags of a run's resources, in the `[{"Key": ..., "Value": ...}]` form of the SageMaker API."""
    tags = {
        TAG_EXECUTION_ID: execution_id,
        TAG_MODEL: model.name,
        TAG_PIPELINE: deployed_pipeline_name(resource_prefix(), config.pipeline.name),
        TAG_PROVIDER: model.model_provider,
        TAG_MANAGED_BY: MANAGED_BY,
    }
    execution_arn = os.environ.get(EXECUTION_ARN_ENV)
    if execution_arn:
        tags[TAG_EXECUTION_ARN] = execution_arn
    return [{"Key": key, "Value": _tag_value(value)} for key, value in tags.items()]


def tags_by_key(tags: list[dict[str, str]]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}


def owned_by(tags: Mapping[str, str], model: ModelConfig, execution_id: str) -> bool:
    """Whether a resource was made by this run for this model (an earlier attempt of the same step)."""
    return (
        tags.get(TAG_MANAGED_BY) == MANAGED_BY
        and tags.get(TAG_EXECUTION_ID) == execution_id
        and tags.get(TAG_MODEL) == model.name
    )


def accepts_eula(model: ModelConfig) -> bool:
    """`custom_attributes: {accept_eula: true}`: the user accepted the model's licence (JumpStart gated models)."""
    value = model.evaluation_config.custom_attributes.get("accept_eula")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def sagemaker_client() -> Any:
    return boto3.client("sagemaker")


def sdk_session() -> Any:
    """A sagemaker SDK session on the default credential chain (the SDK is imported only by steps that need it)."""
    import sagemaker

    return sagemaker.Session(boto_session=boto3.Session())


def paginate(client: Any, operation: str, result_key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a List* call, across pages (a first page alone misses resources in a busy account)."""
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(result_key, [])


def resource_tags_of(client: Any, arn: str) -> dict[str, str]:
    return tags_by_key(list(paginate(client, "list_tags", "Tags", ResourceArn=arn)))


def is_missing(error: ClientError) -> bool:
    """SageMaker answers a describe/delete of an absent resource with a ValidationException ('Could not find
    endpoint ...', 'ModelPackageGroup ... does not exist'), a few APIs with ResourceNotFound."""
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    message = details.get("Message", "")
    absent = "Could not find" in message or "does not exist" in message
    return code == "ResourceNotFound" or (code == "ValidationException" and absent)


def describe_or_none(describe: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any] | None:
    try:
        return describe(**params)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def client_error_line(error: ClientError) -> str:
    details = error.response.get("Error", {})
    operation = getattr(error, "operation_name", "the call")
    return f"{operation} failed: {details.get('Code', 'Error')}: {details.get('Message', str(error))}"


@dataclass(frozen=True)
class WaitSpec:
    """What to wait for in a Describe* answer."""

    what: str
    status_key: str
    done: frozenset[str]
    failed: frozenset[str]
    poll_seconds: float
    timeout_seconds: float


TRAINING_JOB_WAIT = WaitSpec(
    what="training job",
    status_key="TrainingJobStatus",
    done=frozenset({"Completed"}),
    failed=frozenset({"Failed", "Stopped"}),
    poll_seconds=60.0,
    timeout_seconds=5 * 24 * 3600.0,
)
ENDPOINT_WAIT = WaitSpec(
    what="endpoint",
    status_key="EndpointStatus",
    done=frozenset({"InService"}),
    failed=frozenset({"Failed", "OutOfService", "Deleting", "UpdateRollbackFailed"}),
    poll_seconds=30.0,
    timeout_seconds=2 * 3600.0,
)


def wait_for(
    name: str,
    describe: Callable[[], Mapping[str, Any]],
    spec: WaitSpec,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Mapping[str, Any]:
    """Poll `describe` until the status is in `spec.done`; raise `ResourceFailed` with SageMaker's reason on a
    failed state or when `spec.timeout_seconds` pass."""
    deadline = clock() + spec.timeout_seconds
    while True:
        description = describe()
        status = description.get(spec.status_key)
        if status in spec.done:
            return description
        if status in spec.failed:
            reason = description.get("FailureReason") or "no failure reason given"
            raise ResourceFailed(f"{spec.what} {name} is {status}: {_one_line(reason)}")
        if clock() >= deadline:
            raise ResourceFailed(
                f"{spec.what} {name} still {status} after {spec.timeout_seconds:.0f} s; giving up waiting"
            )
        sleep(spec.poll_seconds)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def execution_role_arn() -> str:
    """The role SageMaker jobs and models run as: `EVALOPS_ROLE_ARN`, else the role this process runs under.

    Inside a processing job the caller is `arn:aws:sts::<account>:assumed-role/<role>/<session>`; the role
    ARN is rebuilt from it (a role with a path needs `EVALOPS_ROLE_ARN`, the path is not in the STS ARN).
    """
    configured = os.environ.get(ROLE_ARN_ENV)
    if configured:
        return configured
    caller = boto3.client("sts").get_caller_identity()["Arn"]
    match = re.match(r"^arn:(?P<partition>[\w-]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/", caller)
    if not match:
        raise ControlPlaneError(
            f"cannot tell which IAM role to give SageMaker: set {ROLE_ARN_ENV} (this process runs as {caller})"
        )
    return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"


def required_env(name: str, purpose: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ControlPlaneError(f"environment variable {name} is not set; it is needed for {purpose}")
    return value.rstrip("/")


def run_artifacts_uri(execution_id: str, *parts: str) -> str:
    """`<EVALOPS_ARTIFACTS_URI>/artifacts/<execution id>/<parts...>`: where a run's lasting S3 objects go.

    The pipeline sets EVALOPS_ARTIFACTS_URI to `s3://<artifacts bucket>/<deployed pipeline name>`, the one tree
    that also holds the run's step outputs (`runs/`, expired after a while) and the response cache. What
    goes here is kept: a registered model package points at the fine-tuned model and the metrics in it.
    """
    root = required_env(ARTIFACTS_URI_ENV, "the S3 location of run artifacts")
    if not is_s3(root):
        raise ControlPlaneError(f"{ARTIFACTS_URI_ENV}={root!r} is not an s3:// URI")
    return "/".join([root, "artifacts", execution_id, *parts])


def _container_identity(container: Mapping[str, Any]) -> dict[str, Any]:
    source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    return {
        "image": container.get("Image"),
        "model_data": container.get("ModelDataUrl") or source.get("S3Uri"),
        "model_package": container.get("ModelPackageName"),
        "environment": dict(container.get("Environment", {})),
    }


def serving_models(client: Any, endpoint_name: str) -> list[dict[str, Any]]:
    """What an endpoint serves, per production variant: its models' containers (image, weights, environment)
    and the image digests SageMaker resolved at deployment. Raises ControlPlaneError when unreadable."""
    try:
        endpoint = client.describe_endpoint(EndpointName=endpoint_name)
        config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        resolved = {
            variant["VariantName"]: sorted(
                image.get("ResolvedImage") or image.get("SpecifiedImage") or ""
                for image in variant.get("DeployedImages", [])
            )
            for variant in endpoint.get("ProductionVariants", [])
        }
        served: list[dict[str, Any]] = []
        for variant in config.get("ProductionVariants", []):
            described = client.describe_model(ModelName=variant["ModelName"])
            containers = [described["PrimaryContainer"]] if "PrimaryContainer" in described else []
            containers += described.get("Containers", [])
            served.append(
                {
                    "variant": variant["VariantName"],
                    "containers": [_container_identity(container) for container in containers],
                    "resolved_images": resolved.get(variant["VariantName"], []),
                }
            )
    except ClientError as exc:
        raise ControlPlaneError(
            f"cannot read what endpoint {endpoint_name} serves, which keys its cached answers: "
            f"{client_error_line(exc)} (to skip the cache: evalops run --no-cache, or ResponseCache=bypass)"
        ) from None
    return sorted(served, key=lambda item: str(item["variant"]))
