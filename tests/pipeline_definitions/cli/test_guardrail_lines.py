"""`evalops plan --env NAME` shows the environment's guardrails, resolved as `cdk synth` resolves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main

SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"]
GROUPS = ["sg-0aaa1111bbbb2222c"]
FILE_SUBNETS = ["subnet-0ccc0000dddd1111e"]
FILE_GROUPS = ["sg-0ccc0000dddd1111e"]
KEY_A = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000"
KEY_B = "arn:aws:kms:eu-west-1:123456789012:key/bbbbbbbb-0000-0000-0000-000000000000"
BOUNDARY = "arn:aws:iam::123456789012:policy/workload-boundary"
CONFIG = Path("configs/sample.yaml")


def environments_file(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    defaults = tmp_path / "sagemaker-defaults.yaml"
    defaults.write_text(
        yaml.safe_dump(
            {
                "SchemaVersion": "1.0",
                "SageMaker": {
                    # Training jobs from the file (the environment names no VPC); its output key fills the gap.
                    "TrainingJob": {
                        "VpcConfig": {"Subnets": FILE_SUBNETS, "SecurityGroupIds": FILE_GROUPS},
                        "EnableInterContainerTrafficEncryption": True,
                        "OutputDataConfig": {"KmsKeyId": KEY_A},
                    },
                    "EndpointConfig": {"Tags": [{"Key": "team", "Value": "file"}, {"Key": "owner", "Value": "ml"}]},
                },
            }
        ),
        encoding="utf-8",
    )
    path = tmp_path / "environments.yaml"
    entries = [
        {"name": "dev", "config": str(CONFIG)},
        {
            "name": "prod",
            "prefix": "acme",
            "config": str(CONFIG),
            "network_isolation": True,
            "volume_kms_key_arn": KEY_B,
            "tags": {"team": "environment", "cost-center": "ml-4711"},
            "permissions_boundary_arn": BOUNDARY,
            "warm_pool_keep_alive_seconds": 300,
            "sagemaker_defaults": str(defaults),
        },
        *extra,
    ]
    path.write_text(yaml.safe_dump({"environments": entries}), encoding="utf-8")
    return path


def plan(repo_root: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(repo_root)
    return main(["plan", str(CONFIG), *args])


def test_plan_shows_the_environments_guardrails_with_the_defaults_file_applied(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = environments_file(tmp_path)
    assert plan(repo_root, "--env", "prod", "--environments", str(path), monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    section = out.split("\n\n")
    (lines,) = [part.splitlines() for part in section if part.startswith("Guardrails of environment prod")]
    assert lines == [
        f"Guardrails of environment prod (resources acme-prod-*, {path}, with the SageMaker SDK defaults file "
        f"{tmp_path / 'sagemaker-defaults.yaml'}):",
        "  processing jobs: no VPC (SageMaker's network); network isolation off (they call S3, SageMaker, Bedrock and "
        f"the models); volume key {KEY_B}; output key the environment's key",
        f"  training jobs: VPC subnets {FILE_SUBNETS[0]}, security groups {FILE_GROUPS[0]}; network isolation on; "
        f"volume key {KEY_B}; output key {KEY_A}; inter-container encryption on; warm-pool default 300 s when the "
        "fine-tuning sets no keep_alive_period_in_seconds",
        f"  models and endpoints: no VPC (SageMaker's network); network isolation on; endpoint volume key {KEY_B}",
        # The environment's tags (in file order), then the defaults file's where the key is free.
        "  extra tags (every stack resource and everything a run creates): cost-center=ml-4711, team=environment, "
        "owner=ml",
        f"  permissions boundary (every role the stacks create): {BOUNDARY}",
    ]


def test_an_explicit_vpc_goes_everywhere_and_an_environment_without_guardrails_says_so(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vpc = {"name": "vpc", "config": str(CONFIG), "vpc": {"subnets": SUBNETS, "security_group_ids": GROUPS}}
    path = environments_file(tmp_path, vpc)
    assert plan(repo_root, "--env", "vpc", "--environments", str(path), monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    placed = f"VPC subnets {', '.join(SUBNETS)}, security groups {GROUPS[0]}"
    for kind in ("processing jobs", "training jobs", "models and endpoints"):
        assert f"  {kind}: {placed}; network isolation off" in out

    assert plan(repo_root, "--env", "dev", "--environments", str(path), monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "  processing jobs: no VPC (SageMaker's network); network isolation off" in out
    assert "  extra tags (every stack resource and everything a run creates): none" in out
    assert "  permissions boundary (every role the stacks create): none" in out
    assert "warm-pool default none (only a fine-tuning's own keep_alive_period_in_seconds)" in out

    # Without --env the plan says where the guardrails come from.
    assert plan(repo_root, monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "Guardrails: no environment given; plan --env NAME shows its VPC" in out
    assert "Guardrails of environment" not in out


def test_an_unknown_environment_or_a_model_isolation_forbids_is_one_line(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = environments_file(tmp_path)
    assert plan(repo_root, "--env", "staging", "--environments", str(path), monkeypatch=monkeypatch) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"{path}: environments: no environment named 'staging' (known: dev, prod)"]

    # A Hugging Face model downloads its weights when its endpoint starts, which prod's isolation forbids.
    hub = tmp_path / "hub.yaml"
    hub.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "hub"},
                "dataset": {
                    "dataset_name": "d",
                    "input_data_location": "s3://data/trivia.jsonl",
                    "model_input_key": "q",
                    "target_output_key": "a",
                },
                "models": [
                    {
                        "name": "falcon-hf",
                        "model_provider": "huggingface",
                        "model_id": "tiiuae/falcon-7b-instruct",
                        "deployment_config": {"instance_type": "ml.g5.2xlarge"},
                        "evaluation_config": {"output": "[0].generated_text"},
                    }
                ],
                "algorithms": [{"algorithm": "FactualKnowledge"}],
            }
        ),
        encoding="utf-8",
    )
    assert main(["plan", str(hub), "--env", "dev", "--environments", str(path)]) == 0
    capsys.readouterr()
    assert main(["plan", str(hub), "--env", "prod", "--environments", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"{hub}: models[0].model_provider: model 'falcon-hf' downloads its weights")
    assert "network isolation of models in environment 'prod' forbids" in line
