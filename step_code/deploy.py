"""Deploy a JumpStart or Hugging Face model to a SageMaker endpoint named for this run, and record it.

Two halves: building the model definition (image, model data, environment) needs JumpStart's specs or the
SDK's image tables (`jumpstart_definition`, `huggingface_definition`); creating the model, endpoint config
and endpoint, tagging, waiting and recording is plain SageMaker API (`deploy_endpoint`).

A fine-tuned JumpStart model is deployed from its training job's artifact (`finetune.json`) with the
inference image JumpStart uses for that model id. Model data that is an S3 prefix (uncompressed) is
recorded with a trailing "/", which is how register tells it from a model.tar.gz.

An endpoint that already has this run's name is reused when it is (or becomes) InService: that happens
when SageMaker retries this step. `created` is True when its tags say this run made it for this model,
so cleanup still deletes it; anything else found under the name is used but never deleted.

A model with `cleanup_endpoint: false` is kept and reused across runs (`deploy_kept`): its endpoint is
named after its deployment identity (model id, resolved version, image, weights — the trained artifact
of a fine-tuned model —, environment, instance type and count), so the next run that resolves the same
identity finds it InService and deploys nothing. Its model, endpoint config and endpoint carry
`evalops:keep=true` (the safety net leaves them alone), the identity digest and the time a run last used
it. A run that resolves another identity makes a new endpoint and reports this model's other kept
endpoints as superseded (tagged `evalops:superseded-by`).

keep_for_hours: a kept endpoint is in use from the moment a run's deploy step finds or creates it (or the
champion step answers through it) until that run's pipeline execution ends, however long the run evaluates
or waits between steps. The deploy step marks this with `evalops:in-use-by:<execution id>` on the endpoint,
its config and model; the safety net removes the mark when the execution ends (succeeded, failed or
stopped) and stamps `evalops:last-used` with the end time. A kept endpoint that no execution holds and
whose last use is at least keep_for_hours ago is deleted with its config and model: by the safety net's
hourly sweep, or earlier by a deploy of another identity of the same model that finds it so; the next run
that needs it deploys it again under the same name. A local run has no pipeline execution to end: it
stamps `evalops:last-used` when it deploys and holds nothing, and no safety net sweeps its prefix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code.aws_resources import (
    ENDPOINT_WAIT,
    ControlPlaneError,
    ResourceFailed,
    WaitSpec,
    accepts_eula,
    describe_or_none,
    execution_role_arn,
    is_missing,
    owned_by,
    paginate,
    resource_name,
    resource_prefix,
    resource_tags,
    resource_tags_of,
    run_artifacts_uri,
    sagemaker_client,
    sdk_session,
    wait_for,
)
from step_code.contract.config import Config, ModelConfig, canonical_digest
from step_code.contract.files import DEPLOYMENT_FILE, FINETUNE_FILE
from step_code.contract.job_env import EXECUTION_ARN_ENV
from step_code.contract.naming import kept_endpoint_name, kept_endpoint_stem, resource_base
from step_code.contract.providers import DEPLOYED_PROVIDERS
from step_code.contract.results import Deployment, FinetuneResult, ModelArtifact
from step_code.contract.tags import (
    KEEP,
    LAST_USED_FORMAT,
    MANAGED_BY,
    TAG_DEPLOYMENT_IDENTITY,
    TAG_KEEP,
    TAG_KEEP_FOR_HOURS,
    TAG_LAST_USED,
    TAG_MANAGED_BY,
    TAG_MODEL,
    TAG_PIPELINE,
    TAG_SUPERSEDED_BY,
    in_use,
    in_use_by_key,
    keep_for_hours_value,
)
from step_code.resource_guardrails import (
    deployment_guardrails,
    endpoint_config_settings,
    job_guardrails,
    model_settings,
    with_extra_tags,
)
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, read_model, run_step, write_model

logger = logging.getLogger("evalops.deploy")

VARIANT_NAME = "AllTraffic"
# The largest page ListEndpoints returns.
LIST_PAGE_SIZE = 100
# TGI downloads the weights from the Hugging Face hub when the container starts; SageMaker's default
# health-check window is too short for a 7B model to download and load.
HUGGINGFACE_STARTUP_TIMEOUT_SECONDS = 900
TRANSITIONAL_ENDPOINT_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


@dataclass(frozen=True)
class ModelDefinition:
    """What CreateModel needs besides name, role and tags."""

    container: dict[str, Any]
    network_isolation: bool = False
    # Extra ProductionVariant settings the model needs (timeouts, volume size), by API field name.
    variant_settings: dict[str, int] = field(default_factory=dict)
    # The JumpStart version "*" resolved to, when there is one.
    resolved_version: str | None = None


@dataclass(frozen=True)
class EndpointRequest:
    name: str
    model: ModelConfig
    execution_id: str
    tags: list[dict[str, str]]
    role: str
    instance_type: str
    instance_count: int
    finetuned: FinetuneResult | None = None
    # cleanup_endpoint: false: named by its deployment identity and reused by later runs (`deploy_kept`).
    kept: bool = False
    keep_for_hours: float | None = None
    # The pipeline execution that takes a kept endpoint and holds it until it ends; None in a local run.
    execution_arn: str | None = None
    # The resource prefix, which a kept endpoint's name starts with like every name of the environment.
    prefix: str = ""
    base: str = ""


def jumpstart_definition(
    model: ModelConfig,
    finetuned: FinetuneResult | None,
    *,
    instance_type: str,
    role: str,
    session: Any,
    code_location: str,
) -> ModelDefinition:
    """The JumpStart model (or the fine-tuned artifact of it) as a container definition."""
    from sagemaker.jumpstart.factory.model import get_deploy_kwargs
    from sagemaker.jumpstart.model import JumpStartModel

    model_id = finetuned.base_model_id if finetuned else model.model_id
    version = finetuned.base_model_version if finetuned else model.model_version
    if not model_id:
        raise ControlPlaneError(f"model {model.name!r} has no model_id")
    eula = accepts_eula(model)
    try:
        sdk_model = JumpStartModel(
            model_id=model_id,
            model_version=version,
            instance_type=instance_type,
            model_data=finetuned.model_data_url if finetuned else None,
            role=role,
            sagemaker_session=session,
            code_location=code_location,
        )
        if sdk_model.model_package_arn:
            raise ControlPlaneError(
                f"JumpStart model {model_id!r} is a marketplace model package; deploy it yourself and evaluate "
                "it with model_provider: endpoint"
            )
        defaults = get_deploy_kwargs(
            model_id=model_id,
            model_version=version,
            instance_type=instance_type,
            sagemaker_session=session,
            accept_eula=eula,
        )
        container = sdk_model.prepare_container_def(instance_type=instance_type, accept_eula=eula)
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        raise ControlPlaneError(
            f"cannot resolve JumpStart model {model_id!r} version {version!r} in {session.boto_region_name}: {exc}"
        ) from None
    settings = {
        "ContainerStartupHealthCheckTimeoutInSeconds": defaults.container_startup_health_check_timeout,
        "ModelDataDownloadTimeoutInSeconds": defaults.model_data_download_timeout,
        "VolumeSizeInGB": defaults.volume_size,
    }
    return ModelDefinition(
        container=container,
        network_isolation=bool(sdk_model.enable_network_isolation()),
        variant_settings={key: int(value) for key, value in settings.items() if value is not None},
        # `specs` is set on the kwargs object at run time but not declared in the SDK's types.
        resolved_version=getattr(getattr(defaults, "specs", None), "version", None),
    )


def huggingface_definition(
    model: ModelConfig, *, instance_type: str, role: str, session: Any, code_location: str
) -> ModelDefinition:
    """A Hugging Face hub model served by the TGI image; the weights are fetched by the container at start-up."""
    from sagemaker import instance_types_gpu_info
    from sagemaker.huggingface import HuggingFaceModel, get_huggingface_llm_image_uri

    if not model.model_id:
        raise ControlPlaneError(f"model {model.name!r} has no model_id (the Hugging Face hub id)")
    environment = {"HF_MODEL_ID": model.model_id}
    if model.model_version != "*":
        environment["HF_MODEL_REVISION"] = model.model_version
    gpus = instance_types_gpu_info.retrieve(session.boto_region_name).get(instance_type, {}).get("Count")
    if gpus:
        # TGI shards the model over SM_NUM_GPUS GPUs; unset, it uses one of them.
        environment["SM_NUM_GPUS"] = str(gpus)
    try:
        image = get_huggingface_llm_image_uri("huggingface", session=session)
    except ValueError as exc:
        raise ControlPlaneError(f"no Hugging Face TGI image for {session.boto_region_name}: {exc}") from None
    sdk_model = HuggingFaceModel(
        image_uri=image, env=environment, role=role, sagemaker_session=session, code_location=code_location
    )
    container = sdk_model.prepare_container_def(instance_type=instance_type)
    return ModelDefinition(
        container=container,
        variant_settings={"ContainerStartupHealthCheckTimeoutInSeconds": HUGGINGFACE_STARTUP_TIMEOUT_SECONDS},
    )


def find_endpoint(client: Any, name: str, page_size: int = LIST_PAGE_SIZE) -> dict[str, Any] | None:
    """The endpoint with exactly this name, looked for across every page of ListEndpoints."""
    for item in paginate(
        client, "list_endpoints", "Endpoints", NameContains=name, PaginationConfig={"PageSize": page_size}
    ):
        if item["EndpointName"] == name:
            return item
    return None


def model_artifact(
    request: EndpointRequest, container: dict[str, Any], resolved_version: str | None = None
) -> ModelArtifact:
    model, finetuned = request.model, request.finetuned
    data_source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    return ModelArtifact(
        provider=model.model_provider,
        model_id=finetuned.base_model_id if finetuned else model.model_id,
        model_version=resolved_version or (finetuned.base_model_version if finetuned else model.model_version),
        image_uri=container.get("Image"),
        model_data_url=container.get("ModelDataUrl") or data_source.get("S3Uri"),
        endpoint_name=request.name,
        training_job_name=finetuned.training_job_name if finetuned else None,
        finetuned=finetuned is not None,
        environment={str(key): str(value) for key, value in container.get("Environment", {}).items()},
        training_data_sha256=finetuned.training_data_sha256 if finetuned else None,
    )


def _adopt_or_create(
    client: Any, what: str, request: EndpointRequest, describe: Callable[[], dict[str, Any] | None], arn_key: str
) -> bool:
    """True when the resource must still be created; False when this run's earlier attempt already made it."""
    existing = describe()
    if existing is None:
        return True
    tags = resource_tags_of(client, existing[arn_key])
    if owned_by(tags, request.model, request.execution_id) or _same_kept(tags, request):
        logger.info("%s %s was created by an earlier attempt of this step; using it", what, request.name)
        return False
    raise ControlPlaneError(f"{what} {request.name} already exists and was not created by this run")


def _create_resources(client: Any, request: EndpointRequest, definition: ModelDefinition) -> None:
    name = request.name
    guardrails = job_guardrails()
    tags = with_extra_tags(request.tags, guardrails)
    if _adopt_or_create(
        client, "model", request, lambda: describe_or_none(client.describe_model, ModelName=name), "ModelArn"
    ):
        client.create_model(
            ModelName=name,
            PrimaryContainer=definition.container,
            ExecutionRoleArn=request.role,
            Tags=tags,
            **model_settings(guardrails, model_requires_isolation=definition.network_isolation),
        )
    if _adopt_or_create(
        client,
        "endpoint config",
        request,
        lambda: describe_or_none(client.describe_endpoint_config, EndpointConfigName=name),
        "EndpointConfigArn",
    ):
        variant = {
            "VariantName": VARIANT_NAME,
            "ModelName": name,
            "InstanceType": request.instance_type,
            "InitialInstanceCount": request.instance_count,
            "InitialVariantWeight": 1.0,
            **definition.variant_settings,
        }
        client.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[variant],
            Tags=tags,
            **endpoint_config_settings(guardrails, request.instance_type),
        )
    client.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)


def _reuse(client: Any, existing: dict[str, Any], request: EndpointRequest, wait: WaitSpec) -> Deployment:
    name = request.name
    tags = resource_tags_of(client, existing["EndpointArn"])
    if tags.get(TAG_MANAGED_BY) == MANAGED_BY and tags.get(TAG_MODEL) not in (None, request.model.name):
        raise ControlPlaneError(
            f"endpoint {name} belongs to model {tags[TAG_MODEL]!r} of this run; give each model its own endpoint_name"
        )
    status = existing.get("EndpointStatus")
    if status not in wait.done and status not in TRANSITIONAL_ENDPOINT_STATES:
        description = client.describe_endpoint(EndpointName=name)
        reason = " ".join(str(description.get("FailureReason") or "no failure reason given").split())
        raise ResourceFailed(f"endpoint {name} already exists in status {status} ({reason}); delete it and retry")
    description = wait_for(name, lambda: client.describe_endpoint(EndpointName=name), wait)
    config_name = description["EndpointConfigName"]
    variant = client.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    sagemaker_model = client.describe_model(ModelName=variant["ModelName"])
    container = sagemaker_model.get("PrimaryContainer") or sagemaker_model["Containers"][0]
    created = owned_by(tags, request.model, request.execution_id)
    logger.info("reusing endpoint %s (%s; created by this run: %s)", name, status, created)
    return Deployment(
        model=request.model.name,
        endpoint_name=name,
        endpoint_config_name=config_name,
        model_name=variant["ModelName"],
        created=created,
        instance_type=variant.get("InstanceType"),
        instance_count=int(variant.get("InitialInstanceCount", 1)),
        artifact=model_artifact(request, container),
    )


def deploy_endpoint(
    client: Any,
    request: EndpointRequest,
    build: Callable[[], ModelDefinition],
    *,
    wait: WaitSpec = ENDPOINT_WAIT,
    page_size: int = LIST_PAGE_SIZE,
    now: datetime | None = None,
) -> Deployment:
    """Reuse the run's endpoint if it exists, else create model, endpoint config and endpoint; wait for InService.

    A kept model's endpoint is found or made by its deployment identity instead (`deploy_kept`).
    """
    if request.kept:
        return deploy_kept(client, request, build, wait=wait, page_size=page_size, now=now or datetime.now(UTC))
    existing = find_endpoint(client, request.name, page_size)
    if existing is not None:
        return _reuse(client, existing, request, wait)
    return _create_endpoint(client, request, build(), wait)


def _create_endpoint(client: Any, request: EndpointRequest, definition: ModelDefinition, wait: WaitSpec) -> Deployment:
    """Create the model, endpoint config and endpoint named `request.name`, and wait for InService."""
    _create_resources(client, request, definition)
    logger.info("creating endpoint %s on %d x %s", request.name, request.instance_count, request.instance_type)
    wait_for(request.name, lambda: client.describe_endpoint(EndpointName=request.name), wait)
    return created_deployment(request, model_artifact(request, definition.container, definition.resolved_version))


def created_deployment(request: EndpointRequest, artifact: ModelArtifact) -> Deployment:
    """The deployment of an endpoint this run creates: endpoint, config and model all named `request.name`."""
    return Deployment(
        model=request.model.name,
        endpoint_name=request.name,
        endpoint_config_name=request.name,
        model_name=request.name,
        created=True,
        instance_type=request.instance_type,
        instance_count=request.instance_count,
        artifact=artifact,
    )


def keep_tags(model: ModelConfig) -> list[dict[str, str]]:
    """The tag that keeps the safety net away from an endpoint the config asks to keep after the run."""
    return [] if model.cleanup_endpoint else [{"Key": TAG_KEEP, "Value": KEEP}]


def deployment_identity(request: EndpointRequest, definition: ModelDefinition) -> str:
    """The digest of everything that makes two deployments the same endpoint: what answers and what it runs on."""
    container = definition.container
    data_source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    model, finetuned = request.model, request.finetuned
    return canonical_digest(
        {
            "provider": model.model_provider,
            "model_id": finetuned.base_model_id if finetuned else model.model_id,
            "model_version": definition.resolved_version
            or (finetuned.base_model_version if finetuned else model.model_version),
            "image": container.get("Image"),
            "model_data": container.get("ModelDataUrl") or data_source.get("S3Uri"),
            "environment": container.get("Environment", {}),
            "network_isolation": definition.network_isolation,
            "variant_settings": definition.variant_settings,
            "instance_type": request.instance_type,
            "instance_count": request.instance_count,
            # An endpoint in another VPC, isolated or with another key is another endpoint.
            **deployment_guardrails(job_guardrails(), request.instance_type),
        }
    )


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(LAST_USED_FORMAT)


def _parse_timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", LAST_USED_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _same_kept(tags: dict[str, str], request: EndpointRequest) -> bool:
    """A kept resource of this model and identity, made by any run (the identity tag is set only when kept)."""
    identity = next((t["Value"] for t in request.tags if t["Key"] == TAG_DEPLOYMENT_IDENTITY), None)
    return (
        request.kept
        and identity is not None
        and tags.get(TAG_MANAGED_BY) == MANAGED_BY
        and tags.get(TAG_MODEL) == request.model.name
        and tags.get(TAG_DEPLOYMENT_IDENTITY) == identity
    )


def _kept_arns(client: Any, name: str) -> list[str]:
    """The ARNs of a kept endpoint and of the config and model of the same name, where they exist."""
    arns = []
    for describe, parameter, key in (
        (client.describe_endpoint, "EndpointName", "EndpointArn"),
        (client.describe_endpoint_config, "EndpointConfigName", "EndpointConfigArn"),
        (client.describe_model, "ModelName", "ModelArn"),
    ):
        found = describe_or_none(describe, **{parameter: name})
        if found is not None:
            arns.append(found[key])
    return arns


def use_tags(execution_id: str, execution_arn: str | None, now: datetime) -> dict[str, str]:
    """What a run writes on a kept endpoint it takes: when, and (a pipeline execution) that it holds it."""
    tags = {TAG_LAST_USED: _timestamp(now)}
    if execution_arn:
        tags[in_use_by_key(execution_id)] = execution_arn
    return tags


def _tag_kept(client: Any, name: str, tags: dict[str, str]) -> None:
    for arn in _kept_arns(client, name):
        client.add_tags(ResourceArn=arn, Tags=[{"Key": key, "Value": value} for key, value in tags.items()])


def take_kept(client: Any, name: str, execution_id: str, now: datetime) -> bool:
    """Mark the kept endpoint `name` as used by this run, as a deploy that reuses it does; False (and nothing
    written) when it is not a kept endpoint of this environment, e.g. one the user deployed."""
    if not name.startswith(resource_prefix()):
        return False
    endpoint = describe_or_none(client.describe_endpoint, EndpointName=name)
    if endpoint is None:
        return False
    tags = resource_tags_of(client, endpoint["EndpointArn"])
    if tags.get(TAG_MANAGED_BY) != MANAGED_BY or tags.get(TAG_KEEP) != KEEP:
        return False
    _tag_kept(client, name, use_tags(execution_id, os.environ.get(EXECUTION_ARN_ENV) or None, now))
    return True


def _delete_kept(client: Any, name: str) -> None:
    """Delete an expired kept endpoint, then its config and model (each is its own resource)."""
    for delete, parameter in (
        (client.delete_endpoint, "EndpointName"),
        (client.delete_endpoint_config, "EndpointConfigName"),
        (client.delete_model, "ModelName"),
    ):
        try:
            delete(**{parameter: name})
        except ClientError as exc:
            if not is_missing(exc):
                raise


@dataclass(frozen=True)
class KeptEndpoint:
    name: str
    tags: dict[str, str]

    @property
    def last_used(self) -> datetime | None:
        return _parse_timestamp(self.tags.get(TAG_LAST_USED))

    def expired(self, now: datetime) -> bool:
        """Held by no running pipeline execution and unused for its keep_for_hours (never, without one)."""
        if in_use(self.tags):
            return False
        try:
            hours = float(self.tags.get(TAG_KEEP_FOR_HOURS, ""))
        except ValueError:
            return False
        last_used = self.last_used
        return last_used is not None and now - last_used >= timedelta(hours=hours)


def kept_endpoints(
    client: Any, stem: str, model: str, pipeline: str, page_size: int = LIST_PAGE_SIZE
) -> list[KeptEndpoint]:
    """The kept endpoints of one model of one deployed pipeline (every deployment identity), by name."""
    found = []
    items = paginate(client, "list_endpoints", "Endpoints", NameContains=stem, PaginationConfig={"PageSize": page_size})
    for item in items:
        if not item["EndpointName"].startswith(stem):
            continue
        tags = resource_tags_of(client, item["EndpointArn"])
        if (
            tags.get(TAG_MANAGED_BY) == MANAGED_BY
            and tags.get(TAG_KEEP) == KEEP
            and tags.get(TAG_MODEL) == model
            and tags.get(TAG_PIPELINE) == pipeline
        ):
            found.append(KeptEndpoint(item["EndpointName"], tags))
    return sorted(found, key=lambda kept: kept.name)


def _sweep_superseded(
    client: Any, request: EndpointRequest, now: datetime, page_size: int
) -> tuple[list[str], list[str]]:
    """This model's other kept endpoints: tagged superseded by `request.name`; deleted when expired."""
    pipeline = next(t["Value"] for t in request.tags if t["Key"] == TAG_PIPELINE)
    superseded: list[str] = []
    deleted: list[str] = []
    for kept in kept_endpoints(client, kept_endpoint_stem(request.name), request.model.name, pipeline, page_size):
        if kept.name == request.name:
            continue
        if kept.expired(now):
            logger.warning(
                "deleting kept endpoint %s: unused since %s, longer than its keep_for_hours", kept.name, kept.last_used
            )
            _delete_kept(client, kept.name)
            deleted.append(kept.name)
            continue
        logger.warning(
            "kept endpoint %s is superseded by %s (another deployment identity of %s); it is billed until deleted",
            kept.name,
            request.name,
            request.model.name,
        )
        if kept.tags.get(TAG_SUPERSEDED_BY) != request.name:
            _tag_kept(client, kept.name, {TAG_SUPERSEDED_BY: request.name})
        superseded.append(kept.name)
    return superseded, deleted


def deploy_kept(
    client: Any,
    request: EndpointRequest,
    build: Callable[[], ModelDefinition],
    *,
    wait: WaitSpec,
    page_size: int,
    now: datetime,
) -> Deployment:
    """Find the kept endpoint of this deployment identity and use it, or make it; report superseded ones."""
    definition = build()
    identity = deployment_identity(request, definition)
    identity_tags = {TAG_DEPLOYMENT_IDENTITY: identity, **use_tags(request.execution_id, request.execution_arn, now)}
    if request.keep_for_hours is not None:
        identity_tags[TAG_KEEP_FOR_HOURS] = keep_for_hours_value(request.keep_for_hours)
    request = replace(
        request,
        name=kept_endpoint_name(request.prefix, request.base, identity),
        tags=request.tags + [{"Key": key, "Value": value} for key, value in identity_tags.items()],
    )
    existing = find_endpoint(client, request.name, page_size)
    if existing is not None:
        tags = resource_tags_of(client, existing["EndpointArn"])
        if not _same_kept(tags, request):
            raise ControlPlaneError(
                f"endpoint {request.name} exists but is not the kept endpoint of {request.model.name} with this "
                "deployment identity (its tags differ); delete it or rename the model"
            )
        # Only the use changes: the identity, keep and creation tags stay as the first run set them. Written
        # before waiting, so the safety net's sweep sees the hold from the moment this run has found it.
        used = use_tags(request.execution_id, request.execution_arn, now)
        if request.keep_for_hours is not None:
            used[TAG_KEEP_FOR_HOURS] = identity_tags[TAG_KEEP_FOR_HOURS]
        _tag_kept(client, request.name, used)
        # The version `*` resolved to is known from this run's definition, which has this identity.
        deployment = _reuse(client, existing, request, wait).model_copy(
            update={"artifact": model_artifact(request, definition.container, definition.resolved_version)}
        )
        logger.info("kept endpoint %s has this deployment identity; reusing it, nothing deployed", request.name)
    else:
        deployment = _create_endpoint(client, request, definition, wait)
    superseded, deleted = _sweep_superseded(client, request, now, page_size)
    return deployment.model_copy(update={"kept": True, "superseded": superseded, "expired_deleted": deleted})


def endpoint_request(
    config: Config, model: ModelConfig, execution_id: str, finetuned: FinetuneResult | None
) -> EndpointRequest:
    if not model.deploys_endpoint or model.deployment_config is None:
        raise ControlPlaneError(
            f"model {model.name!r} has model_provider {model.model_provider!r}, which this platform does not "
            f"deploy (only {', '.join(sorted(DEPLOYED_PROVIDERS))} are); the plan has no deploy step for it"
        )
    if finetuned is not None and finetuned.model != model.name:
        raise ControlPlaneError(f"finetune.json is for model {finetuned.model!r}, not {model.name!r}")
    return EndpointRequest(
        name=resource_name(config, model, execution_id),
        model=model,
        execution_id=execution_id,
        tags=resource_tags(config, model, execution_id) + keep_tags(model),
        role=execution_role_arn(),
        instance_type=model.deployment_config.instance_type,
        instance_count=model.deployment_config.num_instances,
        finetuned=finetuned,
        kept=not model.cleanup_endpoint,
        keep_for_hours=model.keep_for_hours,
        execution_arn=os.environ.get(EXECUTION_ARN_ENV) or None,
        prefix=resource_prefix(),
        base=resource_base(config.pipeline.name, model),
    )


def deploy(
    config: Config, model: ModelConfig, execution_id: str, output_dir: Path, finetuned: FinetuneResult | None
) -> Deployment:
    request = endpoint_request(config, model, execution_id, finetuned)
    code_location = run_artifacts_uri(execution_id, "deploy", model.name)

    def build() -> ModelDefinition:
        session = sdk_session()
        if model.provider.deploys == "huggingface-tgi":
            return huggingface_definition(
                model,
                instance_type=request.instance_type,
                role=request.role,
                session=session,
                code_location=code_location,
            )
        return jumpstart_definition(
            model,
            finetuned,
            instance_type=request.instance_type,
            role=request.role,
            session=session,
            code_location=code_location,
        )

    deployment = deploy_endpoint(sagemaker_client(), request, build)
    write_model(output_dir, DEPLOYMENT_FILE, deployment)
    logger.info("endpoint %s is InService", deployment.endpoint_name)
    return deployment


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.deploy", __doc__, model=True, execution_id=True)
    parser.add_argument("--finetune-dir", type=Path, help="Output of the model's finetune step, if it has one.")
    args = parser.parse_args(argv)

    def body() -> None:
        config = read_config(args.config)
        model = config_model(config, args.model, args.config)
        finetuned = read_model(args.finetune_dir / FINETUNE_FILE, FinetuneResult) if args.finetune_dir else None
        if model.finetuning is not None and finetuned is None:
            raise ControlPlaneError(f"model {model.name!r} is fine-tuned; pass its finetune output with --finetune-dir")
        deploy(config, model, args.execution_id, args.output_dir, finetuned)

    return run_step("deploy", body)


if __name__ == "__main__":
    raise SystemExit(main())
