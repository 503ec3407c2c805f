"""A delivery pipeline over small evaluation Stages, synthesized once per module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Aspects, Stack, Stage
from aws_cdk import Environment as CdkEnvironment
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from pipeline_definitions.loading.environments import Environment, EnvironmentsFile
from stacks.delivery_stack import ASSETS_CLI_PACKAGE, CDK_CLI_PACKAGE, DeliveryStack, MakeStage, pinned_npm_version

TOOLING_ACCOUNT = "333333333333"
DEV_ACCOUNT = "111111111111"
PROD_ACCOUNT = "222222222222"
CONNECTION_ARN = "arn:aws:codeconnections:us-east-1:333333333333:connection/12345678-1234-1234-1234-123456789012"


def environments_file(**delivery: Any) -> EnvironmentsFile:
    """dev (own account) then prod (another account and region, behind an approval), delivered from tooling."""
    return EnvironmentsFile.model_validate(
        {
            "environments": [
                {"name": "dev", "account": DEV_ACCOUNT, "config": "configs/sample.yaml"},
                {
                    "name": "prod",
                    "account": PROD_ACCOUNT,
                    "region": "eu-west-1",
                    "prefix": "acme",
                    "config": "configs/reference.yaml",
                    "manual_approval": True,
                },
            ],
            "delivery": {
                "account": TOOLING_ACCOUNT,
                "repository": "acme/evalops",
                "connection_arn": CONNECTION_ARN,
                **delivery,
            },
        }
    )


class SmallEvaluationStage(Stage):
    """Has what the delivery pipeline relies on in the real Stage: one SageMaker pipeline, file and image assets."""

    def __init__(self, scope: Construct, environment: Environment, asset_dir: Path, nag: bool) -> None:
        super().__init__(
            scope, environment.name, env=CdkEnvironment(account=environment.account, region=environment.region)
        )
        stack = Stack(self, "Evaluation")
        s3_assets.Asset(stack, "StepCode", path=str(asset_dir))
        ecr_assets.DockerImageAsset(stack, "StepImage", directory=str(asset_dir))
        sagemaker.CfnPipeline(
            stack,
            "Pipeline",
            pipeline_name=f"{environment.resource_prefix}Evaluation",
            role_arn=f"arn:aws:iam::{environment.account}:role/{environment.resource_prefix}pipeline",
            pipeline_definition={"PipelineDefinitionBody": '{"Version": "2020-12-01", "Steps": []}'},
        )
        if nag:
            # Stages are synthesized when added to the pipeline, so app-level aspects never reach them.
            Aspects.of(self).add(AwsSolutionsChecks())


@pytest.fixture(scope="session")
def asset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("step-image")
    (directory / "Dockerfile").write_text("FROM public.ecr.aws/docker/library/python:3.11-slim\n")
    return directory


@pytest.fixture(scope="session")
def project_context(repo_root: Path) -> dict[str, Any]:
    """The feature flags of cdk.json, which `cdk synth` applies to the real app."""
    return dict(json.loads((repo_root / "cdk.json").read_text())["context"])


@pytest.fixture(scope="session")
def build_delivery(
    asset_dir: Path, project_context: dict[str, Any], repo_root: Path
) -> Callable[..., tuple[App, DeliveryStack]]:
    def build(
        envs: EnvironmentsFile,
        *,
        outdir: Path,
        nag: bool = False,
        connection_arn: str = CONNECTION_ARN,
        stage_factory: MakeStage | None = None,
    ) -> tuple[App, DeliveryStack]:
        assert envs.delivery is not None
        app = App(outdir=str(outdir), context=project_context)
        if nag:
            Aspects.of(app).add(AwsSolutionsChecks())
        stack = DeliveryStack(
            app,
            "Delivery",
            delivery=envs.delivery,
            environments=envs.delivery_environments(),
            stage_factory=stage_factory or (lambda scope, env: SmallEvaluationStage(scope, env, asset_dir, nag)),
            connection_arn=connection_arn,
            cli_version=pinned_npm_version(repo_root, CDK_CLI_PACKAGE),
            assets_cli_version=pinned_npm_version(repo_root, ASSETS_CLI_PACKAGE),
            env=CdkEnvironment(account=envs.delivery.account, region=envs.delivery.region),
        )
        return app, stack

    return build
