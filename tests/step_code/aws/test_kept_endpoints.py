"""Kept endpoints (cleanup_endpoint: false) against moto: named by their deployment identity, reused by the
next run, superseded when the identity changes, held by the runs using them, expired by keep_for_hours after
their last use, and otherwise never touched by the safety net."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main as cli_main
from pipeline_definitions.loading.environments import MAX_EXTRA_TAGS
from step_code import deploy
from step_code.aws_resources import tags_by_key
from step_code.contract.config import Config
from step_code.contract.files import CONFIG_FILE, CONFIG_INPUT, DEPLOYMENT, DEPLOYMENT_FILE
from step_code.contract.naming import SAGEMAKER_NAME_MAX
from step_code.contract.results import Deployment
from step_code.contract.tags import (
    TAG_DEPLOYMENT_IDENTITY,
    TAG_KEEP,
    TAG_KEEP_FOR_HOURS,
    TAG_LAST_USED,
    TAG_SUPERSEDED_BY,
)
from step_code.deploy import ModelDefinition, deploy_endpoint, endpoint_request
from tests.step_code.aws.conftest import CONFIG, INSTANCE, PREFIX, ROLE_ARN, RunDirs, planned_step
from tests.step_code.aws.test_safety_net import event, execution_arn

IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def keeping(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(CONFIG)
    model = next(m for m in data["models"] if m["name"] == "falcon-hf")
    model["cleanup_endpoint"] = False
    model.update(changes)
    return data


def endpoints(aws: Any) -> list[str]:
    return sorted(e["EndpointName"] for e in aws.list_endpoints()["Endpoints"])


def tags_of(aws: Any, name: str) -> dict[str, str]:
    return tags_by_key(aws.list_tags(ResourceArn=aws.describe_endpoint(EndpointName=name)["EndpointArn"])["Tags"])


def run_deploy(run_dirs: RunDirs, data: dict[str, Any], execution_id: str) -> Deployment:
    run_dirs.put_input(CONFIG_INPUT, CONFIG_FILE, json.dumps(data))
    step = planned_step(Config.model_validate(data), "Deploy-falcon-hf")
    assert deploy.main(run_dirs.argv(step, execution_id)) == 0
    return Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))


def test_the_next_run_reuses_the_kept_endpoint_and_deploys_nothing(aws: Any, run_dirs: RunDirs) -> None:
    first = run_deploy(run_dirs, keeping(), "run000000001")
    name = first.endpoint_name
    assert first.created and first.kept and first.superseded == []
    assert name.startswith(f"{PREFIX}evalops-aws-test-falcon-hf-k") and len(name) <= SAGEMAKER_NAME_MAX
    created_at = aws.describe_endpoint(EndpointName=name)["CreationTime"]
    tags = tags_of(aws, name)
    assert tags[TAG_KEEP] == "true" and len(tags[TAG_DEPLOYMENT_IDENTITY]) == 64
    assert name.endswith(tags[TAG_DEPLOYMENT_IDENTITY][:11])
    first_used = tags[TAG_LAST_USED]

    second = run_deploy(run_dirs, keeping(), "run000000002")
    assert second.endpoint_name == name and not second.created and second.kept
    # The second run created no endpoint, endpoint config or model.
    assert endpoints(aws) == [name]
    assert [c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]] == [name]
    assert [m["ModelName"] for m in aws.list_models()["Models"]] == [name]
    assert aws.describe_endpoint(EndpointName=name)["CreationTime"] == created_at
    assert second.artifact.image_uri == first.artifact.image_uri
    again = tags_of(aws, name)
    # The creating run stays on it; the last use moves on.
    assert again["evalops:execution-id"] == "run000000001" and again[TAG_LAST_USED] >= first_used


def test_a_changed_identity_makes_a_new_endpoint_and_reports_the_old_one(aws: Any, run_dirs: RunDirs) -> None:
    old = run_deploy(run_dirs, keeping(), "run000000001").endpoint_name
    resized = keeping(deployment_config={"instance_type": "ml.m5.large", "num_instances": 2})
    new = run_deploy(run_dirs, resized, "run000000002")
    assert new.created and new.endpoint_name != old
    assert new.superseded == [old] and new.expired_deleted == []
    assert endpoints(aws) == sorted([old, new.endpoint_name])
    assert tags_of(aws, old)[TAG_SUPERSEDED_BY] == new.endpoint_name
    assert TAG_SUPERSEDED_BY not in tags_of(aws, new.endpoint_name)


def test_a_superseded_endpoint_unused_for_keep_for_hours_is_deleted(aws: Any, config: Config) -> None:
    data = keeping(keep_for_hours=1)
    kept = Config.model_validate(data)

    def deploy_at(image: str, moment: datetime) -> Deployment:
        request = endpoint_request(kept, kept.model("falcon-hf"), "run00000000" + image[-1], None)
        return deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": image}), now=moment)

    old = deploy_at(IMAGE, T0).endpoint_name
    assert tags_of(aws, old)[TAG_KEEP_FOR_HOURS] == "1"
    # Within the hour: superseded, kept.
    newer = deploy_at(IMAGE[:-1] + "2", T0 + timedelta(minutes=30))
    assert newer.superseded == [old] and newer.expired_deleted == []
    # An hour after its last use, the next deploy of another identity deletes it with its config and model.
    newest = deploy_at(IMAGE[:-1] + "3", T0 + timedelta(hours=1, minutes=1))
    assert newest.expired_deleted == [old]
    assert newest.superseded == [newer.endpoint_name]
    assert old not in endpoints(aws)
    assert old not in [c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]]
    assert old not in [m["ModelName"] for m in aws.list_models()["Models"]]


def test_keep_for_hours_needs_a_kept_deployed_model() -> None:
    data = copy.deepcopy(CONFIG)
    data["models"][0]["keep_for_hours"] = 2
    with pytest.raises(ValueError, match="keep_for_hours applies only to a deployed model with cleanup_endpoint"):
        Config.model_validate(data)


def test_the_safety_net_leaves_a_kept_endpoint_that_a_failed_run_reused(
    aws: Any, run_dirs: RunDirs, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESOURCE_PREFIX", PREFIX)
    name = run_deploy(run_dirs, keeping(), "run000000001").endpoint_name
    run_deploy(run_dirs, keeping(), "fa11ed000002")
    for failed in ("run000000001", "fa11ed000002"):
        summary = safety_net.handler(event(failed), None)
        assert summary["deleted"]["endpoint"] == []
    assert endpoints(aws) == [name]


def test_plan_lists_the_kept_endpoints_in_the_account_and_which_are_superseded(
    aws: Any, run_dirs: RunDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = run_deploy(run_dirs, keeping(), "run000000001").endpoint_name
    resized = keeping(deployment_config={"instance_type": "ml.m5.large", "num_instances": 2})
    new = run_deploy(run_dirs, resized, "run000000002").endpoint_name
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "trivia.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    config_path = tmp_path / "kept.yaml"
    config_path.write_text(yaml.safe_dump(resized), encoding="utf-8")
    capsys.readouterr()

    assert cli_main(["plan", str(config_path), "--catalog-dir", str(catalog), "--kept-endpoints", PREFIX]) == 0
    out = capsys.readouterr().out
    assert f"Kept endpoints in the account under {PREFIX}:" in out
    assert f"  falcon-hf: {old}  SUPERSEDED by {new}, last used " in out
    assert f"  falcon-hf: {new}  current, last used " in out
    assert "falcon-hf: ml.m5.large x2, KEPT and reused by later runs (cleanup_endpoint: false)" in out
    assert "<prefix>evalops-aws-test-falcon-hf-k<deployment identity>" in out


def test_a_kept_jumpstart_model_resolved_from_its_specs_is_reused(
    aws: Any, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    data = copy.deepcopy(CONFIG)
    next(m for m in data["models"] if m["name"] == "llama-base")["cleanup_endpoint"] = False
    run_dirs.put_input(CONFIG_INPUT, CONFIG_FILE, json.dumps(data))
    step = planned_step(Config.model_validate(data), "Deploy-llama-base")
    assert deploy.main(run_dirs.argv(step, "run000000001")) == 0
    first = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    assert deploy.main(run_dirs.argv(step, "run000000002")) == 0
    second = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    assert second.endpoint_name == first.endpoint_name and not second.created
    # The version "*" resolved to is recorded on reuse too, so the cache identity is the same in both runs.
    assert second.artifact == first.artifact and first.artifact.model_version not in (None, "*")
    assert endpoints(aws) == [first.endpoint_name]


def _tags_of_all(aws: Any, name: str) -> list[dict[str, str]]:
    """The tags of a kept endpoint, its config and its model (each is swept on its own)."""
    arns = [
        aws.describe_endpoint(EndpointName=name)["EndpointArn"],
        aws.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"],
        aws.describe_model(ModelName=name)["ModelArn"],
    ]
    return [tags_by_key(aws.list_tags(ResourceArn=arn)["Tags"]) for arn in arns]


def _deploy_in_execution(
    aws: Any, data: dict[str, Any], execution_id: str, image: str, moment: datetime, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    """The deploy step of a pipeline execution (the pipeline passes its ARN), as if it ran at `moment`."""
    monkeypatch.setenv("EVALOPS_EXECUTION_ARN", execution_arn(execution_id))
    kept = Config.model_validate(data)
    request = endpoint_request(kept, kept.model("falcon-hf"), execution_id, None)
    return deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": image}), now=moment)


def _sweep_at(moment: datetime) -> dict[str, Any]:
    return {"detail-type": "Scheduled Event", "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "detail": {}}


def test_a_run_holds_its_kept_endpoint_until_it_ends_however_long_it_takes(
    aws: Any, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep_for_hours 1, a run that deploys, then evaluates or waits for 5 h: neither the hourly sweep nor a
    deploy of another identity deletes the endpoint under it. Its end releases it; an hour later it goes."""
    monkeypatch.setenv("RESOURCE_PREFIX", PREFIX)
    monkeypatch.setenv("ENDPOINT_MAX_AGE_HOURS", "39")
    start = datetime.now(UTC) - timedelta(hours=6)
    name = _deploy_in_execution(aws, keeping(keep_for_hours=1), "10ng00000001", IMAGE, start, monkeypatch).endpoint_name
    for tags in _tags_of_all(aws, name):
        assert tags["evalops:in-use-by:10ng00000001"] == execution_arn("10ng00000001")

    # Five hours after its deploy stamp the run still holds it: the sweep keeps it.
    held = safety_net.handler(_sweep_at(start + timedelta(hours=5)), None)
    assert held["deleted"] == {"endpoint": [], "endpoint-config": [], "model": []} and held["errors"] == []
    # Another run deploys another identity of the model: the held endpoint is superseded, not deleted.
    newer = _deploy_in_execution(
        aws, keeping(keep_for_hours=1), "0ther0000002", IMAGE[:-1] + "2", start + timedelta(hours=5), monkeypatch
    )
    assert newer.superseded == [name] and newer.expired_deleted == []
    assert name in endpoints(aws)

    # The run ends (successfully) 5.5 h after its deploy: the hold goes, its end becomes the last use.
    ended = start + timedelta(hours=5, minutes=30)
    released = safety_net.handler(event("10ng00000001", "Succeeded", at=ended), None)
    assert released["released"] == [f"{kind}/{name}" for kind in ("endpoint", "endpoint-config", "model")]
    for tags in _tags_of_all(aws, name):
        assert not any(key.startswith("evalops:in-use-by:") for key in tags)
        assert tags[TAG_LAST_USED] == ended.strftime("%Y-%m-%dT%H:%M:%SZ")
    # keep_for_hours counts from the end of that use, not from the deploy.
    assert safety_net.handler(_sweep_at(ended + timedelta(minutes=59)), None)["deleted"]["endpoint"] == []
    gone = safety_net.handler(_sweep_at(ended + timedelta(hours=1)), None)
    assert gone["deleted"] == {"endpoint": [name], "endpoint-config": [name], "model": [name]}
    # The other run still holds its own endpoint: past its keep_for_hours too, it stays.
    assert endpoints(aws) == [newer.endpoint_name]


def test_overlapping_runs_each_hold_the_endpoint_until_the_last_one_ends(
    aws: Any, safety_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESOURCE_PREFIX", PREFIX)
    monkeypatch.setenv("ENDPOINT_MAX_AGE_HOURS", "39")
    start = datetime.now(UTC) - timedelta(hours=10)
    data = keeping(keep_for_hours=1)
    name = _deploy_in_execution(aws, data, "f1rst0000001", IMAGE, start, monkeypatch).endpoint_name
    again = _deploy_in_execution(aws, data, "sec0nd000002", IMAGE, start + timedelta(hours=1), monkeypatch)
    assert again.endpoint_name == name and not again.created
    tags = tags_of(aws, name)
    assert {key for key in tags if key.startswith("evalops:in-use-by:")} == {
        "evalops:in-use-by:f1rst0000001",
        "evalops:in-use-by:sec0nd000002",
    }
    # The later run ends first; the earlier one, still running, keeps holding it.
    safety_net.handler(event("sec0nd000002", "Succeeded", at=start + timedelta(hours=2)), None)
    assert safety_net.handler(_sweep_at(start + timedelta(hours=8)), None)["deleted"]["endpoint"] == []
    # A failed end releases too, and never deletes a kept endpoint; its end time is the last use.
    failed = safety_net.handler(event("f1rst0000001", "Failed", at=start + timedelta(hours=8)), None)
    assert failed["deleted"]["endpoint"] == [] and f"endpoint/{name}" in failed["released"]
    assert tags_of(aws, name)[TAG_LAST_USED] == (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # An end event that arrives late never moves the last use back.
    safety_net.handler(event("sec0nd000002", "Succeeded", at=start + timedelta(hours=2)), None)
    assert tags_of(aws, name)[TAG_LAST_USED] == (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert safety_net.handler(_sweep_at(start + timedelta(hours=9)), None)["deleted"]["endpoint"] == [name]


def test_a_local_run_holds_nothing_and_the_champion_holds_the_kept_endpoint_it_answers_through(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALOPS_EXECUTION_ARN", raising=False)
    kept = Config.model_validate(keeping(keep_for_hours=1))
    request = endpoint_request(kept, kept.model("falcon-hf"), "l0cal0000001", None)
    name = deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE}), now=T0).endpoint_name
    # Nothing would end a local run's hold: it writes only when it used the endpoint.
    assert not any(key.startswith("evalops:in-use-by:") for key in tags_of(aws, name))
    assert tags_of(aws, name)[TAG_LAST_USED] == "2026-12-01T12:00:00Z"

    monkeypatch.setenv("EVALOPS_EXECUTION_ARN", execution_arn("champ0000001"))
    later = T0 + timedelta(hours=3)
    assert deploy.take_kept(aws, name, "champ0000001", later)
    for tags in _tags_of_all(aws, name):
        assert tags["evalops:in-use-by:champ0000001"] == execution_arn("champ0000001")
        assert tags[TAG_LAST_USED] == "2026-12-01T15:00:00Z"
    # An endpoint that is not a kept one of this environment is left as it is.
    tags = [{"Key": "team", "Value": "llm"}]
    aws.create_model(ModelName=f"{PREFIX}user", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE_ARN, Tags=tags)
    aws.create_endpoint_config(
        EndpointConfigName=f"{PREFIX}user",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{PREFIX}user",
                "InstanceType": INSTANCE,
                "InitialInstanceCount": 1,
            }
        ],
    )
    aws.create_endpoint(EndpointName=f"{PREFIX}user", EndpointConfigName=f"{PREFIX}user", Tags=tags)
    assert not deploy.take_kept(aws, f"{PREFIX}user", "champ0000001", later)
    assert tags_of(aws, f"{PREFIX}user") == {"team": "llm"}
    assert not deploy.take_kept(aws, "someone-elses-endpoint", "champ0000001", later)


def test_a_kept_endpoint_has_room_for_the_extra_tags_and_nine_runs_using_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SageMaker allows 50 tags per resource: the run's own on a superseded kept endpoint, one hold per run using
    it, and an environment's extra tags must fit together."""
    data = keeping(keep_for_hours=1)
    old = _deploy_in_execution(aws, data, "run000000001", IMAGE, T0, monkeypatch).endpoint_name
    _deploy_in_execution(aws, data, "run000000002", IMAGE[:-1] + "2", T0, monkeypatch)
    own = tags_of(aws, old)
    assert TAG_SUPERSEDED_BY in own and len([key for key in own if key.startswith("evalops:in-use-by:")]) == 1
    assert len(own) - 1 == 11
    assert len(own) - 1 + 9 + MAX_EXTRA_TAGS == 50
