"""Delivery: a self-mutating CDK pipeline (CodePipeline V2) in a tooling account.

Every push to the configured branch that touches the config, the prompt catalog, the step code or the
infrastructure code runs the fast tests, synthesizes the app, deploys one Stage per environment in order
(behind a manual approval where the environment asks for one) and then starts that environment's SageMaker
pipeline, so a prompt-only change still produces a new evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_cdk import CfnResource, Stack, Stage, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as codepipeline_actions
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from pipeline_definitions.environments import CONNECTION_ARN_RE, DeliverySettings, Environment
from stacks.constructs.delivery_evaluation_start import add_evaluation_start
from stacks.constructs.delivery_nag import acknowledge_delivery_findings

CONNECTION_ARN_CONTEXT_KEY = "delivery_connection_arn"
# Amazon Linux 2023 standard:5.0 ships Python 3.11 and Node.js 22 (the Node the CDK CLI and jsii support).
BUILD_IMAGE = codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5
RUNTIME_VERSIONS = {"python": "3.11", "nodejs": "22"}
# CDK Pipelines links an extra input into a directory that must not exist yet; the files are copied over
# prompt_catalog/ from there, so objects in S3 replace same-named files from git.
S3_CATALOG_DIRECTORY = ".prompt_catalog_s3"
SETUP_COMMAND = "bash scripts/setup.sh"
FAST_TESTS_COMMAND = '.venv/bin/python -m pytest -m "not slow"'
CONNECTION_SOURCE_PROVIDER = "CodeStarSourceConnection"

StageFactory = Callable[[Construct, Environment], Stage]


def resolve_connection_arn(delivery: DeliverySettings, context_value: Any) -> str:
    """The CodeConnections ARN: the CDK context value if given, else the environments file's."""
    if context_value is not None:
        if not isinstance(context_value, str) or not CONNECTION_ARN_RE.match(context_value):
            raise ValueError(
                f"context {CONNECTION_ARN_CONTEXT_KEY}: {context_value!r} is not a connection ARN "
                "(expected arn:aws:codeconnections:REGION:ACCOUNT:connection/ID)"
            )
        return context_value
    if delivery.connection_arn is None:
        raise ValueError(
            "delivery.connection_arn is not set: add it to the delivery section of the environments file "
            f"or pass -c {CONNECTION_ARN_CONTEXT_KEY}=ARN"
        )
    return delivery.connection_arn


def synth_commands(connection_arn: str, *, with_s3_catalog: bool) -> list[str]:
    overlay = [f"cp -R {S3_CATALOG_DIRECTORY}/. prompt_catalog/"] if with_s3_catalog else []
    # The ARN is passed on so a value that came from the command line survives the pipeline's own synth.
    synth = f'PATH="$PWD/.venv/bin:$PATH" npx cdk synth -c {CONNECTION_ARN_CONTEXT_KEY}={connection_arn}'
    return [*overlay, FAST_TESTS_COMMAND, synth]


class DeliveryStack(Stack):
    """The delivery pipeline; `stage_factory` builds the evaluation Stage of one environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        delivery: DeliverySettings,
        environments: Sequence[Environment],
        stage_factory: StageFactory,
        connection_arn: str,
        cli_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if not environments:
            raise ValueError("the delivery pipeline needs at least one environment to deploy")
        source = pipelines.CodePipelineSource.connection(
            delivery.repository,
            delivery.branch,
            connection_arn=connection_arn,
            # The V2 trigger below decides when to run; with filters CodePipeline expects DetectChanges off.
            trigger_on_push=False,
        )
        additional_inputs: dict[str, pipelines.IFileSetProducer] = {}
        if delivery.prompt_catalog_source is not None:
            bucket = s3.Bucket.from_bucket_name(self, "PromptCatalogBucket", delivery.prompt_catalog_source.bucket)
            additional_inputs[S3_CATALOG_DIRECTORY] = pipelines.CodePipelineSource.s3(
                bucket,
                delivery.prompt_catalog_source.key,
                action_name="PromptCatalog",
                trigger=codepipeline_actions.S3Trigger.EVENTS,
            )
        synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            additional_inputs=additional_inputs or None,
            install_commands=[SETUP_COMMAND],
            commands=synth_commands(connection_arn, with_s3_catalog=bool(additional_inputs)),
            primary_output_directory="cdk.out",
            # The set-up installs PyTorch and the test suite imports fmeval: SMALL (3 GB) is too tight.
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
        self._add_push_trigger(delivery)
        self._acknowledge_lint_findings()
        acknowledge_delivery_findings(self.pipeline, start_roles)

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

    def _acknowledge_lint_findings(self) -> None:
        pipeline = self.pipeline.pipeline.node.default_child
        assert isinstance(pipeline, CfnResource)
        # E3703: cfn-lint re-labels its informational "prefer Fn::Sub" hint as this error for the deploy actions'
        # RoleArn, which CDK renders as Fn::Join over AWS::Partition. W3005: CDK makes the pipeline depend on its
        # role construct, so the role is listed in DependsOn next to the policy that really must come first.
        pipeline.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3703", "W3005"]}})
