"""The safety-net Lambda against moto: it deletes the failed execution's tagged resources and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from step_code.contract.config import Config
from step_code.deploy import KeptEndpoint, ModelDefinition, deploy_endpoint, endpoint_request
from tests.step_code.aws.conftest import INSTANCE, PREFIX, ROLE_ARN, RUN_ARTIFACTS

FAILED = "fa11ed000001"
HEALTHY = "0k0000000002"
IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"


def execution_arn(execution_id: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/evalops-test-trivia/execution/{execution_id}"


def event(execution_id: str, status: str = "Failed", at: datetime | None = None) -> dict[str, Any]:
    """The status-change event of an execution that ended `at` (EventBridge's `time`; default now)."""
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {
            "pipelineArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/evalops-test-trivia",
            "pipelineExecutionArn": execution_arn(execution_id),
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


def test_deletes_nothing_of_executions_that_did_not_fail(lambda_env: Any, config: Config, safety_net: Any) -> None:
    name = deploy_for(lambda_env, config, "falcon-hf", HEALTHY)
    assert safety_net.handler(event(HEALTHY, "Executing"), None)["action"] == "ignored"
    # A successful end only releases the kept endpoints the execution held (none here).
    succeeded = safety_net.handler(event(HEALTHY, "Succeeded"), None)
    assert (succeeded["action"], succeeded["released"], succeeded["errors"]) == ("released", [], [])
    assert "deleted" not in succeeded
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


def kept_deploy(aws: Any, config: Config, model: str, image: str, used_at: datetime) -> str:
    """Deploy a kept model's endpoint as the deploy step does, as if a run used it at `used_at`."""
    request = endpoint_request(config, config.model(model), HEALTHY, None)
    build = lambda: ModelDefinition(container={"Image": image})  # noqa: E731
    return deploy_endpoint(aws, request, build, now=used_at).endpoint_name


def test_the_schedule_deletes_kept_endpoints_no_run_used_for_their_keep_for_hours(
    lambda_env: Any, config: Config, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep_for_hours is read from the tags the deploy step wrote: superseded or current, an endpoint unused
    that long goes with its config and model; one without keep_for_hours stays; the next run deploys it again."""
    aws = lambda_env
    monkeypatch.setenv("ENDPOINT_MAX_AGE_HOURS", "39")
    changes = {
        "llama-base": {"cleanup_endpoint": False, "keep_for_hours": 2},
        "falcon-hf": {"cleanup_endpoint": False},
    }
    models = [m.model_copy(update=changes.get(m.name, {})) for m in config.models]
    keeping = config.model_copy(update={"models": models})
    now = datetime.now(UTC)
    forever = kept_deploy(aws, keeping, "falcon-hf", IMAGE, now - timedelta(hours=1000))
    superseded = kept_deploy(aws, keeping, "llama-base", IMAGE, now - timedelta(hours=1))
    current = kept_deploy(aws, keeping, "llama-base", IMAGE[:-1] + "2", now)
    assert len({forever, superseded, current}) == 3

    # Superseded and unused for 2.5 h: deleted; the current one (1.5 h) and the one without keep_for_hours stay.
    first = safety_net.handler(scheduled(1.5), None)
    assert first["deleted"] == {"endpoint": [superseded], "endpoint-config": [superseded], "model": [superseded]}
    assert first["errors"] == []
    remaining = sorted([forever, current])
    assert names(aws) == {"endpoint": remaining, "endpoint-config": remaining, "model": remaining}

    # The current one, unused for 2 h and a bit, goes too; the one without keep_for_hours never does.
    second = safety_net.handler(scheduled(2.05), None)
    assert second["deleted"] == {"endpoint": [current], "endpoint-config": [current], "model": [current]}
    # Past the age bound a kept endpoint without keep_for_hours is reported as kept, and stays.
    old = safety_net.handler(scheduled(40), None)
    assert old["deleted"]["endpoint"] == []
    assert old["kept"] == [f"{kind}/{forever}" for kind in ("endpoint", "endpoint-config", "model")]
    assert names(aws)["endpoint"] == [forever]

    # The next run that needs it deploys it again under the same name (its deployment identity is unchanged).
    request = endpoint_request(keeping, keeping.model("llama-base"), HEALTHY, None)
    again = deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE[:-1] + "2"}))
    assert again.endpoint_name == current and again.created
    assert names(aws)["endpoint"] == sorted([forever, current])


def test_the_lambda_reads_the_keep_for_hours_tags_as_the_deploy_step_writes_them(
    aws: Any, config: Config, safety_net: Any
) -> None:
    models = [
        m.model_copy(update={"cleanup_endpoint": False, "keep_for_hours": 1.5}) if m.name == "llama-base" else m
        for m in config.models
    ]
    keeping = config.model_copy(update={"models": models})
    used_at = datetime(2026, 12, 1, 12, 0, 7, tzinfo=UTC)
    name = kept_deploy(aws, keeping, "llama-base", IMAGE, used_at)
    arn = aws.describe_endpoint(EndpointName=name)["EndpointArn"]
    tags = {tag["Key"]: tag["Value"] for tag in aws.list_tags(ResourceArn=arn)["Tags"]}
    # The two values as written, and the Lambda's reading of them: the boundary is exactly 1.5 h after use.
    assert (tags["evalops:last-used"], tags["evalops:keep-for-hours"]) == ("2026-12-01T12:00:07Z", "1.5")
    boundary = used_at + timedelta(hours=1.5)
    assert safety_net.kept_expired(tags, boundary)
    assert not safety_net.kept_expired(tags, boundary - timedelta(seconds=1))
    # A deploy of the same model that finds it applies the same rule to the same tags.
    assert KeptEndpoint(name, tags).expired(boundary)
    assert not KeptEndpoint(name, tags).expired(boundary - timedelta(seconds=1))
    # Without the keep_for_hours tag, or with a last use it cannot read, a kept endpoint never expires.
    assert not safety_net.kept_expired({**tags, "evalops:keep-for-hours": "x"}, boundary + timedelta(days=999))
    untimed = {key: value for key, value in tags.items() if key != "evalops:keep-for-hours"}
    assert not safety_net.kept_expired(untimed, boundary + timedelta(days=999))
