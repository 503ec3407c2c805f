"""Synthesized apps shared by the stack tests: synthesis goes through jsii and takes many seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk.assertions import Template

from stacks.app_builder import AppOptions, build_app
from stacks.stage import EvaluationStage

DEV_ACCOUNT = "111111111111"
PROD_ACCOUNT = "222222222222"
GUARDED_ACCOUNT = "333333333333"
GUARDED_SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0bbb2222cccc3333d"]
GUARDED_SECURITY_GROUPS = ["sg-0aaa1111bbbb2222c"]
GUARDED_VOLUME_KEY = f"arn:aws:kms:eu-west-1:{GUARDED_ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
GUARDED_OUTPUT_KEY = f"arn:aws:kms:eu-west-1:{GUARDED_ACCOUNT}:key/66666666-7777-8888-9999-000000000000"
GUARDED_BOUNDARY = f"arn:aws:iam::{GUARDED_ACCOUNT}:policy/platform/evalops-boundary"
GUARDED_KEEP_ALIVE = 600
GUARDED_TAGS = {"cost-center": "ml-4711"}
# What the platform team's SDK defaults file adds: an output key and a tag; its RoleArn does not apply.
GUARDED_SDK_DEFAULTS: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {
        "TrainingJob": {
            "OutputDataConfig": {"KmsKeyId": GUARDED_OUTPUT_KEY},
            "Tags": [{"Key": "data-classification", "Value": "internal"}],
        },
        "ProcessingJob": {"RoleArn": f"arn:aws:iam::{GUARDED_ACCOUNT}:role/platform-default"},
    },
}
MANY_MODELS = 60


SYNTHESIZED_APPS = {"reference_app", "mixed_app", "guarded_app"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read a whole synthesized app are slow (the fast suite, `-m "not slow"`, skips them)."""
    for item in items:
        if SYNTHESIZED_APPS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def cdk_context(repo_root: Path) -> dict[str, Any]:
    """The app's context from cdk.json, except that annotations stay annotations.

    With `annotationsInValidationReport` a cdk-nag error aborts `app.synth()` with one opaque exception;
    without it the tests read every finding through `Annotations` and name each one that fails.
    """
    context = dict(json.loads((repo_root / "cdk.json").read_text())["context"])
    context["@aws-cdk/core:annotationsInValidationReport"] = False
    return context


@dataclass
class SynthesizedApp:
    stages: list[EvaluationStage]
    outdir: Path

    @property
    def stage(self) -> EvaluationStage:
        return self.stages[0]

    def stacks(self) -> list[cdk.Stack]:
        return [stack for stage in self.stages for stack in stage_stacks(stage)]

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("assembly-*/*.template.json"))


def stage_stacks(stage: EvaluationStage) -> list[cdk.Stack]:
    return stage.stacks


def synthesize(repo_root: Path, outdir: Path, options: AppOptions) -> SynthesizedApp:
    app = cdk.App(outdir=str(outdir), context=cdk_context(repo_root))
    stages = build_app(app, options, repo_root)
    app.synth()
    return SynthesizedApp(stages=stages, outdir=outdir)


def mixed_config(dataset_uri: str) -> dict[str, Any]:
    """60 candidates of every provider the stacks treat differently; the dataset lives in S3."""
    base: dict[str, Any] = yaml.safe_load(Path(__file__).parents[2].joinpath("configs/reference.yaml").read_text())
    jumpstart = base["models"][1]
    models: list[dict[str, Any]] = [
        {**jumpstart, "name": f"falcon-{index}", "endpoint_name": None} for index in range(MANY_MODELS - 4)
    ]
    models += [
        {
            "name": "claude-haiku",
            "model_provider": "bedrock",
            "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        },
        {
            "name": "claude-profile",
            "model_provider": "bedrock",
            "model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        },
        {
            "name": "team-endpoint",
            "model_provider": "endpoint",
            "endpoint_name": "Team-Llama-Endpoint",
            "evaluation_config": {"output": "[0].generated_text", "content_template": "PROMPT_PLACEHOLDER"},
        },
        {
            "name": "finetuned",
            **{k: v for k, v in base["models"][2].items() if k not in ("name", "endpoint_name")},
            "finetuning": {
                **base["models"][2]["finetuning"],
                "train_data_path": "s3://team-datasets/trivia/train/",
                "validation_data_path": None,
            },
        },
    ]
    return {
        **base,
        "pipeline": {"name": "Mixed-Providers", "parallelism": 8},
        "dataset": {**base["dataset"], "input_data_location": dataset_uri},
        "models": models,
        "model_registry": {"model_package_group_name": "MixedWinners"},
    }


MIXED_DATASET_URI = "s3://team-datasets/trivia/evaluation.jsonl"


@pytest.fixture(scope="session")
def reference_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The default environments file with the reference config (the AWS sample's) in place of its own."""
    options = AppOptions(
        environments_file=repo_root / "configs/environments.yaml",
        config_override=repo_root / "configs/reference.yaml",
    )
    return synthesize(repo_root, tmp_path_factory.mktemp("reference-app"), options)


@pytest.fixture(scope="session")
def mixed_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """Two environments (accounts, regions, prefixes) running the 60-model mixed-provider config."""
    folder = tmp_path_factory.mktemp("mixed-app")
    config = folder / "mixed.yaml"
    config.write_text(yaml.safe_dump(mixed_config(MIXED_DATASET_URI), sort_keys=False))
    environments = folder / "environments.yaml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {"name": "dev", "account": DEV_ACCOUNT, "config": str(config)},
                    {
                        "name": "prod",
                        "account": PROD_ACCOUNT,
                        "region": "eu-west-1",
                        "prefix": "acme",
                        "config": str(config),
                    },
                ]
            }
        )
    )
    return synthesize(repo_root, folder / "cdk.out", AppOptions(environments_file=environments))


@pytest.fixture(scope="session")
def guarded_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The reference config in an account with guardrails: VPC only, isolation, keys, tags, a boundary."""
    folder = tmp_path_factory.mktemp("guarded-app")
    defaults = folder / "sagemaker-defaults.yaml"
    defaults.write_text(yaml.safe_dump(GUARDED_SDK_DEFAULTS, sort_keys=False))
    environments = folder / "environments.yaml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {
                        "name": "prod",
                        "account": GUARDED_ACCOUNT,
                        "region": "eu-west-1",
                        "config": "configs/reference.yaml",
                        "vpc": {"subnets": GUARDED_SUBNETS, "security_group_ids": GUARDED_SECURITY_GROUPS},
                        "network_isolation": True,
                        "volume_kms_key_arn": GUARDED_VOLUME_KEY,
                        "tags": GUARDED_TAGS,
                        "permissions_boundary_arn": GUARDED_BOUNDARY,
                        "sagemaker_defaults": str(defaults),
                        "warm_pool_keep_alive_seconds": GUARDED_KEEP_ALIVE,
                    }
                ]
            }
        )
    )
    return synthesize(repo_root, folder / "cdk.out", AppOptions(environments_file=environments))


def policy_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) of every IAM policy, managed or inline, in the template."""
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, resource in template.find_resources(resource_type).items():
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                yield logical_id, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
