"""The cleanup step against moto: deletes what deploy created, idempotently, and nothing it did not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from step_code import cleanup, deploy
from step_code.contract.config import Config
from step_code.contract.files import CLEANUP, CLEANUP_FILE, DEPLOYMENT, DEPLOYMENT_FILE
from step_code.contract.results import CleanupResult, Deployment, ModelArtifact
from step_code.deploy import ModelDefinition, deploy_endpoint, endpoint_request
from tests.step_code.aws.conftest import ROLE_ARN, RunDirs, planned_step

EXECUTION = "c1ea00000001"
IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"


def deployed(aws: Any, config: Config, model: str, execution_id: str = EXECUTION) -> Deployment:
    request = endpoint_request(config, config.model(model), execution_id, None)
    return deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE}))


def counts(aws: Any) -> tuple[int, int, int]:
    return (
        len(aws.list_endpoints()["Endpoints"]),
        len(aws.list_endpoint_configs()["EndpointConfigs"]),
        len(aws.list_models()["Models"]),
    )


def run_main(run_dirs: RunDirs, config: Config, deployment: Deployment) -> CleanupResult:
    run_dirs.put_input(DEPLOYMENT, DEPLOYMENT_FILE, deployment.model_dump_json())
    step = planned_step(config, f"Cleanup-{deployment.model}")
    assert cleanup.main(run_dirs.argv(step, EXECUTION)) == 0
    return CleanupResult.model_validate(run_dirs.output(CLEANUP, CLEANUP_FILE))


def test_deletes_the_deployment_and_is_idempotent(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    assert deploy.main(run_dirs.argv(planned_step(config, "Deploy-falcon-hf"), EXECUTION)) == 0
    deployment = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    other = deployed(aws, config, "falcon-hf", execution_id="0therrun0001")
    assert counts(aws) == (2, 2, 2)

    first = run_main(run_dirs, config, deployment)
    name = deployment.endpoint_name
    assert first.deleted == [f"endpoint/{name}", f"endpoint-config/{name}", f"model/{name}"]
    assert first.skipped_reason is None and first.already_absent == [] and first.not_managed == []
    # The other run's endpoint is untouched.
    assert [e["EndpointName"] for e in aws.list_endpoints()["Endpoints"]] == [other.endpoint_name]
    assert counts(aws) == (1, 1, 1)

    again = run_main(run_dirs, config, deployment)
    assert again.deleted == []
    assert again.already_absent == [f"endpoint/{name}", f"endpoint-config/{name}", f"model/{name}"]
    assert counts(aws) == (1, 1, 1)


def test_keeps_an_endpoint_it_did_not_create(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    deployment = deployed(aws, config, "falcon-hf").model_copy(update={"created": False})
    result = run_main(run_dirs, config, deployment)
    assert result.skipped_reason == "the deploy step reused an endpoint it did not create"
    assert result.deleted == []
    assert counts(aws) == (1, 1, 1)


def test_never_touches_a_user_endpoint(aws: Any, config: Config) -> None:
    aws.create_model(ModelName="team-llm-prod", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE_ARN)
    user_endpoint = Deployment(
        model="existing",
        endpoint_name="team-llm-prod",
        model_name="team-llm-prod",
        created=True,
        artifact=ModelArtifact(provider="endpoint", endpoint_name="team-llm-prod"),
    )
    result = cleanup.cleanup(aws, config.model("existing"), user_endpoint)
    assert result.skipped_reason == "the endpoint belongs to the user (model_provider endpoint)"
    assert counts(aws) == (0, 0, 1)


def test_does_not_delete_resources_not_tagged_as_its_own(aws: Any, config: Config) -> None:
    deployment = deployed(aws, config, "falcon-hf")
    # A model of the same name that evalops did not tag (replaced outside the platform).
    aws.delete_model(ModelName=deployment.model_name)
    aws.create_model(ModelName=deployment.model_name, PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE_ARN)
    result = cleanup.cleanup(aws, config.model("falcon-hf"), deployment)
    assert result.not_managed == [f"model/{deployment.model_name}"]
    assert result.deleted == [f"endpoint/{deployment.endpoint_name}", f"endpoint-config/{deployment.endpoint_name}"]
    assert counts(aws) == (0, 0, 1)


def test_a_deployment_of_another_model_is_refused(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = deployed(aws, config, "falcon-hf")
    run_dirs.put_input(DEPLOYMENT, DEPLOYMENT_FILE, json.dumps(deployment.model_dump()))
    assert cleanup.main(run_dirs.argv(planned_step(config, "Cleanup-llama-base"), EXECUTION)) == 1
    assert capsys.readouterr().err.strip() == (
        "cleanup: error: deployment.json is for model 'falcon-hf', not 'llama-base'"
    )
    assert counts(aws) == (1, 1, 1)
