"""Ask the approved champion again on this run's catalog, with the evaluate step's own code.

Used by the champion step when the champion's stored outputs do not fit the run. What answers:
- a package with an InferenceSpecification (a model this platform deployed): the endpoint its summary names
  when that endpoint is InService (a kept endpoint, which this run then holds as its deploy step would, so
  keep_for_hours cannot expire it under the evaluation; or one the user deployed under that name), else a
  redeployment of the package: CreateModel from its first container, an endpoint config and an endpoint
  under a run-scoped name, tagged like every resource of the run (so the safety net deletes it if this step
  dies), deleted again when the evaluation ends;
- a reference package (Bedrock model, an existing endpoint, an HTTP or OpenAI-compatible server): the model
  as it was configured when it won, called again;
- recorded responses cannot answer prompts they were not recorded on: unanswerable.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from step_code import cleanup, evaluate_step
from step_code.aws_resources import (
    describe_or_none,
    execution_role_arn,
    resource_prefix,
    resource_tags,
    sagemaker_client,
)
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import CONFIG_FILE, DEPLOYMENT_FILE
from step_code.contract.naming import run_scoped_name
from step_code.contract.results import Deployment, EvaluatedAs, ModelArtifact
from step_code.deploy import EndpointRequest, ModelDefinition, created_deployment, deploy_endpoint, take_kept
from step_code.step_io import write_model

logger = logging.getLogger("evalops.champion")

# The container fields CreateModel takes that a model package's container also has.
_CONTAINER_FIELDS = ("Image", "ModelDataUrl", "ModelDataSource", "Environment")
IN_SERVICE = "InService"


class Unanswerable(Exception):
    """The champion cannot be asked again; the message says why."""


def champion_model(evaluated_as: EvaluatedAs, config: Config) -> ModelConfig:
    """The champion as it was configured when it won, asked with this run's prompt template for its name."""
    try:
        model = ModelConfig.model_validate(evaluated_as.model)
    except ValidationError as exc:
        raise Unanswerable(f"its recorded model config is not valid today ({exc.errors()[0]['msg']})") from None
    template = prompt_template(evaluated_as, config)
    return model.model_copy(
        update={"evaluation_config": model.evaluation_config.model_copy(update={"prompt_template": template})}
    )


def prompt_template(evaluated_as: EvaluatedAs, config: Config) -> str:
    """This run's template for a model of the champion's name (its prompting changed), else the recorded one."""
    name = evaluated_as.model.get("name")
    recorded = str(evaluated_as.model.get("evaluation_config", {}).get("prompt_template", ""))
    current = next((m for m in config.models if m.name == name), None)
    return current.evaluation_config.prompt_template if current is not None else recorded


def in_service_endpoint(client: Any, name: str | None) -> Mapping[str, Any] | None:
    if not name:
        return None
    description = describe_or_none(client.describe_endpoint, EndpointName=name)
    return description if description is not None and description.get("EndpointStatus") == IN_SERVICE else None


def _package_container(package: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    specification = package.get("InferenceSpecification") or {}
    containers = specification.get("Containers") or []
    if not containers:
        raise Unanswerable("the package has no inference container to deploy")
    container = {key: containers[0][key] for key in _CONTAINER_FIELDS if key in containers[0]}
    types = specification.get("SupportedRealtimeInferenceInstanceTypes") or []
    return container, types[0] if types else None


def _artifact(model: ModelConfig, container: Mapping[str, Any], endpoint: str) -> ModelArtifact:
    data_source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    return ModelArtifact(
        provider=model.model_provider,
        model_id=model.model_id,
        model_version=model.model_version,
        image_uri=container.get("Image"),
        model_data_url=container.get("ModelDataUrl") or data_source.get("S3Uri"),
        endpoint_name=endpoint,
        environment={str(k): str(v) for k, v in container.get("Environment", {}).items()},
    )


@contextmanager
def redeployed(
    client: Any, config: Config, model: ModelConfig, package: Mapping[str, Any], version: int, execution_id: str
) -> Iterator[Deployment]:
    """The package deployed to a run-scoped endpoint for the duration of the block, then deleted."""
    container, listed_type = _package_container(package)
    instance_type = listed_type or (model.deployment_config.instance_type if model.deployment_config else None)
    if instance_type is None:
        raise Unanswerable("neither the package nor its recorded config names an instance type to deploy it on")
    request = EndpointRequest(
        name=run_scoped_name(resource_prefix(), f"{config.pipeline.name}-champion-v{version}", execution_id),
        model=model,
        execution_id=execution_id,
        tags=resource_tags(config, model, execution_id),
        role=execution_role_arn(),
        instance_type=instance_type,
        instance_count=model.deployment_config.num_instances if model.deployment_config else 1,
    )
    logger.info("redeploying approved champion version %d as endpoint %s", version, request.name)
    # Deleted however the block ends, also when the endpoint never came into service; the deletion checks
    # the tags, so a resource of that name this run did not make is left alone.
    deployment = created_deployment(request, _artifact(model, container, request.name))
    try:
        deploy_endpoint(client, request, lambda: ModelDefinition(container=container))
        yield deployment
    finally:
        cleanup.cleanup(client, model, deployment)


def _evaluate(
    config: Config,
    model: ModelConfig,
    deployment: Deployment | None,
    *,
    output_dir: Path,
    dataset_dir: str,
    execution_id: str,
    cache_uri: str,
) -> None:
    """The evaluate step on a config whose only model is the champion: same algorithms, same catalog."""
    with tempfile.TemporaryDirectory(prefix="evalops-champion-") as scratch:
        folder = Path(scratch)
        (folder / CONFIG_FILE).write_text(
            config.model_copy(update={"models": [model]}).model_dump_json(), encoding="utf-8"
        )
        deployment_dir = None
        if deployment is not None:
            write_model(folder / "deployment", DEPLOYMENT_FILE, deployment)
            deployment_dir = str(folder / "deployment")
        evaluate_step.evaluate(
            evaluate_step.EvaluateArgs(
                config=folder / CONFIG_FILE,
                output_dir=str(output_dir),
                model=model.name,
                execution_id=execution_id,
                dataset_dir=dataset_dir,
                deployment_dir=deployment_dir,
                catalog_dir=None,
                cache_uri=cache_uri,
            )
        )


def answer_again(
    config: Config,
    evaluated_as: EvaluatedAs,
    package: Mapping[str, Any],
    endpoint_name: str | None,
    *,
    version: int,
    output_dir: Path,
    dataset_dir: str,
    execution_id: str,
    cache_uri: str,
) -> tuple[Literal["endpoint", "redeployed"], str]:
    """Evaluate the champion into `output_dir`; (status, how) where status is `endpoint` or `redeployed`."""
    model = champion_model(evaluated_as, config)
    run = partial(
        _evaluate,
        config,
        output_dir=output_dir,
        dataset_dir=dataset_dir,
        execution_id=execution_id,
        cache_uri=cache_uri,
    )
    if not model.provider.calls_model:
        raise Unanswerable(f"model {model.name} replays recorded responses, which cannot answer other prompts")
    if "InferenceSpecification" not in package:
        run(model, None)
        where = model.endpoint_name or model.endpoint_url or model.model_id
        return "endpoint", f"asked again through {model.model_provider} {where}"
    client = sagemaker_client()
    endpoint = in_service_endpoint(client, endpoint_name)
    if endpoint is not None:
        take_kept(client, str(endpoint["EndpointName"]), execution_id, datetime.now(UTC))
        container, _ = _package_container(package)
        deployment = Deployment(
            model=model.name,
            endpoint_name=str(endpoint["EndpointName"]),
            endpoint_config_name=str(endpoint.get("EndpointConfigName", "")),
            model_name=None,
            created=False,
            artifact=_artifact(model, container, str(endpoint["EndpointName"])),
        )
        run(model, deployment)
        return "endpoint", f"asked again through its endpoint {deployment.endpoint_name}, in service"
    with redeployed(client, config, model, package, version, execution_id) as deployment:
        run(model, deployment)
    return "redeployed", f"asked again on a redeployment of its package (endpoint {deployment.endpoint_name}, deleted)"
