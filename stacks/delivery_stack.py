"""Delivery: a self-mutating CDK pipeline (CodePipeline V2) in a tooling account.

Every push to the configured branch that touches the config, the prompt catalog, the step code or the
infrastructure code runs the fast tests, synthesizes the app, deploys one Stage per environment in order
(behind a manual approval where the environment asks for one) and then starts that environment's SageMaker
pipeline, so a prompt-only change still produces a new evaluation.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from aws_cdk import CfnResource, Stack, Stage, pipelines
from aws_cdk import Environment as CdkEnvironment
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as codepipeline_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from pipeline_definitions.loading.environments import CONNECTION_ARN_RE, DeliverySettings, Environment, EnvironmentsFile
from pipeline_definitions.loading.loader import ConfigError, Problem
from stacks.components.delivery_evaluation_start import START_ACTION_NAME, add_evaluation_start, start_namespace
from stacks.components.delivery_grants import narrow_asset_role_grants, scope_replication_key_grants
from stacks.components.delivery_nag import acknowledge_delivery_findings
from stacks.components.service_trust import condition_codebuild_trust

CONNECTION_ARN_CONTEXT_KEY = "delivery_connection_arn"
# Amazon Linux 2023 standard:5.0 ships Python 3.11 and Node.js 22 (a Node the CDK CLI and jsii support).
BUILD_IMAGE = codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5
RUNTIME_VERSIONS = {"python": "3.11", "nodejs": "22"}
# CDK Pipelines links an extra input into a directory that must not exist yet; the files are copied over
# prompt_catalog/ from there, so objects from S3 replace same-named files from git.
S3_CATALOG_DIRECTORY = ".prompt_catalog_s3"
S3_CATALOG_OVERLAY_COMMAND = f"cp -R {S3_CATALOG_DIRECTORY}/. prompt_catalog/"
SETUP_COMMAND = "bash scripts/setup.sh"
FAST_TESTS_COMMAND = '.venv/bin/python -m pytest -m "not slow"'
CONNECTION_SOURCE_PROVIDER = "CodeStarSourceConnection"
# The npm packages whose exact versions package.json pins: the CDK CLI (self-mutation) and the CLI that
# publishes assets (CDK Pipelines would otherwise install `cdk-assets@latest` on every run).
CDK_CLI_PACKAGE = "aws-cdk"
ASSETS_CLI_PACKAGE = "cdk-assets"
EXACT_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")

MakeStage = Callable[[Construct, Environment], Stage]


def synth_command(context: Mapping[str, str]) -> str:
    """`cdk synth` with the context the app was synthesized with, so the pipeline's own synth matches it."""
    options = "".join(f" -c {key}={shlex.quote(value)}" for key, value in sorted(context.items()))
    return f'PATH="$PWD/.venv/bin:$PATH" npx cdk synth{options}'


class DeliveryStack(Stack):
    """The delivery pipeline; `stage_factory` builds the evaluation Stage of one environment.

    `synth_context` holds CDK context values (besides the connection ARN) that the pipeline's synth step
    passes to `cdk synth`; `cli_version` and `assets_cli_version` are the exact versions of the CDK CLI and
    of cdk-assets that the pipeline installs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        delivery: DeliverySettings,
        environments: Sequence[Environment],
        stage_factory: MakeStage,
        connection_arn: str,
        synth_context: Mapping[str, str] | None = None,
        cli_version: str,
        assets_cli_version: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if not environments:
            raise ValueError("the delivery pipeline needs at least one environment to deploy")
        source = pipelines.CodePipelineSource.connection(
            delivery.repository,
            delivery.branch,
            connection_arn=connection_arn,
            # The V2 trigger below decides when to run; with trigger filters CodePipeline expects DetectChanges off.
            trigger_on_push=False,
        )
        additional_inputs: dict[str, pipelines.IFileSetProducer] = {}
        commands = [
            FAST_TESTS_COMMAND,
            synth_command({**(synth_context or {}), CONNECTION_ARN_CONTEXT_KEY: connection_arn}),
        ]
        if delivery.prompt_catalog_source is not None:
            bucket = s3.Bucket.from_bucket_name(self, "PromptCatalogBucket", delivery.prompt_catalog_source.bucket)
            additional_inputs[S3_CATALOG_DIRECTORY] = pipelines.CodePipelineSource.s3(
                bucket,
                delivery.prompt_catalog_source.key,
                action_name="PromptCatalog",
                trigger=codepipeline_actions.S3Trigger.EVENTS,
            )
            commands.insert(0, S3_CATALOG_OVERLAY_COMMAND)
        synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            additional_inputs=additional_inputs or None,
            install_commands=[SETUP_COMMAND],
            commands=commands,
            primary_output_directory="cdk.out",
            # The set-up installs PyTorch and the tests import fmeval: SMALL (3 GB) is too tight.
            build_environment=codebuild.BuildEnvironment(compute_type=codebuild.ComputeType.MEDIUM),
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=delivery.name,
            pipeline_type=codepipeline.PipelineType.V2,
            synth=synth,
            self_mutation=True,
            cross_account_keys=True,
            enable_key_rotation=True,
            cli_version=cli_version,
            cdk_assets_cli_version=assets_cli_version,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE),
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"version": "0.2", "phases": {"install": {"runtime-versions": RUNTIME_VERSIONS}}}
                ),
            ),
        )
        start_roles: list[IConstruct] = []
        for environment in environments:
            target = delivery.target(environment)
            stage = stage_factory(self, target)
            start = add_evaluation_start(self, delivery, target, stage)
            if start.role is not None:
                start_roles.append(start.role)
            approval = pipelines.ManualApprovalStep(
                "Approve", comment=f"Deploy {target.name} to account {target.account} in {target.region}?"
            )
            self.pipeline.add_stage(stage, pre=[approval] if target.manual_approval else None, post=[start])
        self.pipeline.build_pipeline()
        narrow_asset_role_grants(self.pipeline)
        scope_replication_key_grants(self.pipeline)
        condition_codebuild_trust(self)
        self._add_push_trigger(delivery)
        self._name_start_outputs()
        self._acknowledge_lint_findings()
        acknowledge_delivery_findings(self.pipeline, start_roles)
        if delivery.permissions_boundary_arn is not None:
            # The tooling account's roles; each environment's Stage applies its own boundary (aspects stop at Stages).
            boundary = iam.ManagedPolicy.from_managed_policy_arn(
                self, "PermissionsBoundary", delivery.permissions_boundary_arn
            )
            iam.PermissionsBoundary.of(self).apply(boundary)

    def _add_push_trigger(self, delivery: DeliverySettings) -> None:
        # CDK Pipelines has no trigger option; the built L2 pipeline takes one, tied to the connection action.
        pipeline = self.pipeline.pipeline
        source_action = next(
            action
            for action in pipeline.stages[0].actions
            if action.action_properties.provider == CONNECTION_SOURCE_PROVIDER
        )
        pipeline.add_trigger(
            provider_type=codepipeline.ProviderType.CODE_STAR_SOURCE_CONNECTION,
            git_configuration=codepipeline.GitConfiguration(
                source_action=source_action,
                push_filter=[
                    codepipeline.GitPushFilter(
                        branches_includes=[delivery.branch], file_paths_includes=list(delivery.trigger_paths)
                    )
                ],
            ),
        )

    def _name_start_outputs(self) -> None:
        # CDK Pipelines gives an action a variables namespace only when a later step consumes one of its
        # variables; with a namespace the execution ARN shows among the pipeline execution's variables.
        pipeline = cast(CfnResource, self.pipeline.pipeline.node.default_child)
        for stage_index, stage in enumerate(self.pipeline.pipeline.stages):
            for action_index, action in enumerate(stage.actions):
                if action.action_properties.action_name == START_ACTION_NAME:
                    pipeline.add_property_override(
                        f"Stages.{stage_index}.Actions.{action_index}.Namespace", start_namespace(stage.stage_name)
                    )

    def _acknowledge_lint_findings(self) -> None:
        pipeline = cast(CfnResource, self.pipeline.pipeline.node.default_child)
        # E3703: cfn-lint re-labels its informational "prefer Fn::Sub" hint as this error for the deploy actions'
        # RoleArn, which CDK Pipelines renders as Fn::Join over AWS::Partition. W3005: CDK makes the pipeline depend
        # on its role construct, so the role is listed in DependsOn next to the role's policy, which must come first.
        pipeline.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3703", "W3005"]}})


def resolve_connection_arn(delivery: DeliverySettings, context_value: Any, *, source: str) -> str:
    """The CodeConnections ARN: the CDK context value if given, else the one in the environments file `source`."""
    if context_value is not None:
        if not isinstance(context_value, str) or not CONNECTION_ARN_RE.match(context_value):
            expected = "arn:aws:codeconnections:REGION:ACCOUNT:connection/ID"
            message = f"{context_value!r} is not a connection ARN (expected {expected})"
            raise ConfigError([Problem("cdk context", None, CONNECTION_ARN_CONTEXT_KEY, message)])
        return context_value
    if delivery.connection_arn is None:
        message = f"not set: add the CodeConnections ARN here or pass -c {CONNECTION_ARN_CONTEXT_KEY}=ARN"
        raise ConfigError([Problem(source, None, "delivery.connection_arn", message)])
    return delivery.connection_arn


def pinned_npm_version(repo_root: Path, package: str) -> str:
    """The exact version of an npm package that package.json pins, so the pipeline uses what was tested."""
    path = repo_root / "package.json"
    try:
        pins = json.loads(path.read_text(encoding="utf-8")).get("devDependencies", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError([Problem(str(path), None, "devDependencies", f"unreadable: {exc}")]) from None
    version = pins.get(package) if isinstance(pins, dict) else None
    if not isinstance(version, str) or not EXACT_VERSION_RE.fullmatch(version):
        message = f"expected an exact version (e.g. 1.2.3) of {package}, got {version!r}"
        raise ConfigError([Problem(str(path), None, f"devDependencies.{package}", message)])
    return version


def add_delivery(
    scope: Construct,
    environments_file: EnvironmentsFile,
    stage_factory: MakeStage,
    *,
    repo_root: Path,
    source: Path,
    synth_context: Mapping[str, Path],
) -> DeliveryStack | None:
    """The delivery pipeline, when the environments file `source` has a `delivery:` section.

    `synth_context` names the files the app was synthesized with (context key to path); they must be
    inside the repository, which is all the pipeline sees. The pipeline synthesizes each Stage as it is
    added, before app-level aspects run, so Stages must bring their own cdk-nag checks (EvaluationStage does).
    """
    delivery = environments_file.delivery
    if delivery is None:
        return None
    connection_arn = resolve_connection_arn(
        delivery, scope.node.try_get_context(CONNECTION_ARN_CONTEXT_KEY), source=str(source)
    )
    context: dict[str, str] = {}
    for key, path in synth_context.items():
        if not path.resolve().is_relative_to(repo_root.resolve()):
            message = f"{path} is outside the repository, so the delivery pipeline cannot read it"
            raise ConfigError([Problem("cdk context", None, key, message)])
        context[key] = path.resolve().relative_to(repo_root.resolve()).as_posix()

    return DeliveryStack(
        scope,
        delivery.name,
        delivery=delivery,
        environments=environments_file.delivery_environments(),
        stage_factory=stage_factory,
        connection_arn=connection_arn,
        synth_context=context,
        cli_version=pinned_npm_version(repo_root, CDK_CLI_PACKAGE),
        assets_cli_version=pinned_npm_version(repo_root, ASSETS_CLI_PACKAGE),
        env=CdkEnvironment(account=delivery.account, region=delivery.region),
        description=f"evalops delivery: {delivery.name} deploys every environment and starts its evaluation",
    )
