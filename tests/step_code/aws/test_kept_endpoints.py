"""Kept endpoints (cleanup_endpoint: false) against moto: named by their deployment identity, reused by the
next run, superseded when the identity changes, expired by keep_for_hours, and never touched by the safety net."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main as cli_main
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
from tests.step_code.aws.conftest import CONFIG, PREFIX, RunDirs, planned_step
from tests.step_code.aws.test_safety_net import event

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
