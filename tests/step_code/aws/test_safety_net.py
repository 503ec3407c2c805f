"""The safety-net Lambda against moto: it deletes the failed execution's tagged resources and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from step_code.contract.config import Config
from step_code.deploy import ModelDefinition, deploy_endpoint, endpoint_request
from tests.step_code.aws.conftest import INSTANCE, PREFIX, ROLE_ARN, RUN_ARTIFACTS

FAILED = "fa11ed000001"
HEALTHY = "0k0000000002"
IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"


def event(execution_id: str, status: str = "Failed") -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "detail": {
            "pipelineArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/evalops-test-trivia",
            "pipelineExecutionArn": (
                f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/evalops-test-trivia/execution/{execution_id}"
            ),
            "currentPipelineExecutionStatus": status,
            "previousPipelineExecutionStatus": "Executing",
        },
    }


def deploy_for(aws: Any, config: Config, model: str, execution_id: str) -> str:
    request = endpoint_request(config, config.model(model), execution_id, None)
    return deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE})).endpoint_name


def create_all(aws: Any, name: str, tags: list[dict[str, str]]) -> None:
    aws.create_model(ModelName=name, PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE_ARN, Tags=tags)
    aws.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": INSTANCE, "InitialInstanceCount": 1}
        ],
        Tags=tags,
    )
    aws.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)


def names(aws: Any) -> dict[str, list[str]]:
    return {
        "endpoint": sorted(e["EndpointName"] for e in aws.list_endpoints()["Endpoints"]),
        "endpoint-config": sorted(c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]),
        "model": sorted(m["ModelName"] for m in aws.list_models()["Models"]),
    }


@pytest.fixture
def lambda_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RESOURCE_PREFIX", PREFIX)
    return aws


def test_deletes_only_the_failed_executions_resources(
    lambda_env: Any, config: Config, safety_net: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = lambda_env
    failed = [deploy_for(aws, config, model, FAILED) for model in ("falcon-hf", "llama-base")]
    healthy = deploy_for(aws, config, "falcon-hf", HEALTHY)
    failed_tags = endpoint_request(config, config.model("falcon-hf"), FAILED, None).tags
    # The failed execution's id on a resource outside the prefix, and one tagged as a user's endpoint.
    create_all(aws, "other-team-endpoint", failed_tags)
    user_owned = f"{PREFIX}user-endpoint"
    user_tags = [
        {"Key": tag["Key"], "Value": "endpoint" if tag["Key"] == "evalops:provider" else tag["Value"]}
        for tag in failed_tags
    ]
    create_all(aws, user_owned, user_tags)
    # A finished training job of the failed execution: only jobs still in progress are stopped.
    aws.create_training_job(
        TrainingJobName=f"{PREFIX}finished-training",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        OutputDataConfig={"S3OutputPath": RUN_ARTIFACTS},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=failed_tags,
    )
    # Under the prefix but not tagged at all.
    untagged = f"{PREFIX}untagged"
    create_all(aws, untagged, [])

    summary = safety_net.handler(event(FAILED), None)
    assert summary["action"] == "cleaned" and summary["execution_id"] == FAILED
    assert summary["deleted"] == {"endpoint": failed, "endpoint-config": failed, "model": failed}
    assert summary["errors"] == [] and summary["stopped_training_jobs"] == []
    assert summary["kept"] == [f"endpoint/{user_owned}", f"endpoint-config/{user_owned}", f"model/{user_owned}"]
    remaining = sorted([healthy, "other-team-endpoint", user_owned, untagged])
    assert names(aws) == {"endpoint": remaining, "endpoint-config": remaining, "model": remaining}

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["message"] == "cleaning up after execution" and lines[-1]["message"] == "clean-up finished"
    assert {line["name"] for line in lines if line["message"] == "deleted"} == set(failed)

    again = safety_net.handler(event(FAILED), None)
    assert again["deleted"] == {"endpoint": [], "endpoint-config": [], "model": []}
    assert names(aws)["endpoint"] == remaining


def test_keeps_the_endpoints_the_config_keeps(
    lambda_env: Any, config: Config, safety_net: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = lambda_env
    models = [m.model_copy(update={"cleanup_endpoint": False}) if m.name == "llama-base" else m for m in config.models]
    keeping = config.model_copy(update={"models": models})
    # Both of the same failed execution: only the one without cleanup_endpoint: false is deleted.
    kept = deploy_for(aws, keeping, "llama-base", FAILED)
    deleted = deploy_for(aws, keeping, "falcon-hf", FAILED)

    summary = safety_net.handler(event(FAILED), None)
    assert summary["deleted"] == {"endpoint": [deleted], "endpoint-config": [deleted], "model": [deleted]}
    assert summary["kept"] == [f"endpoint/{kept}", f"endpoint-config/{kept}", f"model/{kept}"]
    assert summary["errors"] == []
    assert names(aws) == {"endpoint": [kept], "endpoint-config": [kept], "model": [kept]}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keeping_lines = [line for line in lines if line["message"].startswith("keeping a resource its config keeps")]
    assert [(line["kind"], line["name"]) for line in keeping_lines] == [
        ("endpoint", kept),
        ("endpoint-config", kept),
        ("model", kept),
    ]


def test_ignores_executions_that_did_not_fail(lambda_env: Any, config: Config, safety_net: Any) -> None:
    name = deploy_for(lambda_env, config, "falcon-hf", HEALTHY)
    for status in ("Succeeded", "Executing"):
        assert safety_net.handler(event(HEALTHY, status), None)["action"] == "ignored"
    assert names(lambda_env)["endpoint"] == [name]
    assert safety_net.handler(event(HEALTHY, "Stopped"), None)["deleted"]["endpoint"] == [name]


def test_a_recorded_execution_arn_must_match_the_event(
    lambda_env: Any, config: Config, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "EVALOPS_EXECUTION_ARN",
        f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/another-pipeline/execution/{FAILED}",
    )
    name = deploy_for(lambda_env, config, "falcon-hf", FAILED)
    summary = safety_net.handler(event(FAILED), None)
    assert summary["deleted"]["endpoint"] == []
    assert names(lambda_env)["endpoint"] == [name]


def test_refuses_to_run_without_a_prefix(
    aws: Any, config: Config, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESOURCE_PREFIX", raising=False)
    name = deploy_for(aws, config, "falcon-hf", FAILED)
    with pytest.raises(RuntimeError, match="RESOURCE_PREFIX is not set"):
        safety_net.handler(event(FAILED), None)
    assert names(aws)["endpoint"] == [name]


def scheduled(hours_from_now: float) -> dict[str, Any]:
    """The hourly EventBridge schedule's event, `hours_from_now` after the resources were created."""
    moment = datetime.now(UTC) + timedelta(hours=hours_from_now)
    return {
        "version": "0",
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {},
    }


def test_the_schedule_deletes_what_outlived_the_age_bound_of_an_execution_that_never_ended(
    lambda_env: Any, config: Config, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An execution hanging in Executing sends no status event: its endpoints are bounded by their age."""
    aws = lambda_env
    monkeypatch.setenv("ENDPOINT_MAX_AGE_HOURS", "39")
    models = [m.model_copy(update={"cleanup_endpoint": False}) if m.name == "llama-base" else m for m in config.models]
    keeping = config.model_copy(update={"models": models})
    hanging = deploy_for(aws, keeping, "falcon-hf", HEALTHY)
    kept = deploy_for(aws, keeping, "llama-base", HEALTHY)
    user_owned = f"{PREFIX}user-endpoint"
    tags = endpoint_request(keeping, keeping.model("falcon-hf"), HEALTHY, None).tags
    create_all(aws, user_owned, [{**t, "Value": "endpoint"} if t["Key"] == "evalops:provider" else t for t in tags])
    untagged = f"{PREFIX}untagged"
    create_all(aws, untagged, [])
    everything = sorted([hanging, kept, user_owned, untagged])

    young = safety_net.handler(scheduled(38), None)
    assert young["action"] == "swept" and young["deleted"] == {"endpoint": [], "endpoint-config": [], "model": []}
    assert names(aws) == {"endpoint": everything, "endpoint-config": everything, "model": everything}

    old = safety_net.handler(scheduled(40), None)
    assert old["deleted"] == {"endpoint": [hanging], "endpoint-config": [hanging], "model": [hanging]}
    assert sorted(old["kept"]) == sorted(
        f"{kind}/{name}" for kind in ("endpoint", "endpoint-config", "model") for name in (kept, user_owned)
    )
    assert old["errors"] == []
    remaining = sorted([kept, user_owned, untagged])
    assert names(aws) == {"endpoint": remaining, "endpoint-config": remaining, "model": remaining}
    # Kept endpoints stay however old they get.
    assert safety_net.handler(scheduled(24 * 365), None)["deleted"]["endpoint"] == []
    assert names(aws)["endpoint"] == remaining


def test_the_schedule_refuses_to_sweep_without_an_age_bound(lambda_env: Any, config: Config, safety_net: Any) -> None:
    name = deploy_for(lambda_env, config, "falcon-hf", HEALTHY)
    with pytest.raises(RuntimeError, match="ENDPOINT_MAX_AGE_HOURS is not a positive number"):
        safety_net.handler(scheduled(1000), None)
    assert names(lambda_env)["endpoint"] == [name]
