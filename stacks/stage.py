"""One deployment environment as a CDK Stage: storage, registry, evaluation pipeline and safety net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from pipeline_definitions.loading.account_guardrails import check_isolation, resolve_guardrails
from pipeline_definitions.loading.environments import Environment
from pipeline_definitions.loading.loader import LoadedConfig
from stacks.evaluation_pipeline_stack import EvaluationPipelineStack
from stacks.registry_stack import RegistryStack
from stacks.safety_net_stack import SafetyNetStack
from stacks.storage_stack import StorageStack
from step_code.contract.naming import deployed_pipeline_name
from step_code.contract.tags import TAG_PIPELINE

TAG_ENVIRONMENT = "evalops:environment"


def stage_id(environment: Environment) -> str:
    return f"{environment.prefix}-{environment.name}"


def sagemaker_pipeline_name(environment: Environment, loaded: LoadedConfig) -> str:
    """`{prefix}-{env}-{pipeline}`: the pipeline's name, prefixed like every resource of the environment."""
    return deployed_pipeline_name(environment.resource_prefix, loaded.config.pipeline.name)


class EvaluationStage(cdk.Stage):
    """Stacks are named `{prefix}-{env}-{component}`; they pass resources to each other as constructor props."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: Environment,
        loaded: LoadedConfig,
        repo_root: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, construct_id, env=cdk.Environment(account=environment.account, region=environment.region), **kwargs
        )
        self.environment = environment
        self.loaded = loaded
        prefix = environment.resource_prefix
        pipeline_name = sagemaker_pipeline_name(environment, loaded)
        groups = loaded.config.model_package_groups()
        self.guardrails = resolve_guardrails(environment, repo_root)
        check_isolation(self.guardrails, environment, loaded)
        self.storage = StorageStack(
            self,
            "Storage",
            stack_name=f"{prefix}storage",
            description=f"evalops {environment.name}: KMS key, prompt catalog and artifacts buckets",
            resource_prefix=prefix,
            pipeline_name=pipeline_name,
        )
        self.registry = RegistryStack(
            self,
            "Registry",
            stack_name=f"{prefix}registry",
            description=f"evalops {environment.name}: model package groups of the evaluation winners",
            groups=groups,
        )
        self.evaluation = EvaluationPipelineStack(
            self,
            "Evaluation",
            stack_name=f"{prefix}evaluation",
            description=f"evalops {environment.name}: SageMaker evaluation pipeline {pipeline_name}",
            loaded=loaded,
            repo_root=repo_root,
            resource_prefix=prefix,
            pipeline_name=pipeline_name,
            key=self.storage.key,
            data_bucket=self.storage.data_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            model_package_groups=list(groups),
            guardrails=self.guardrails,
        )
        # `cdk synth` prints these; they sit on the stack whose pipeline the defaults file shapes.
        for warning in self.guardrails.warnings:
            cdk.Annotations.of(self.evaluation).add_warning_v2("evalops:sagemaker-defaults", warning)
        # Winners are registered into the groups; the groups must exist before the first run.
        self.evaluation.add_stack_dependency(self.registry)
        self.safety_net = SafetyNetStack(
            self,
            "SafetyNet",
            stack_name=f"{prefix}safety-net",
            description=f"evalops {environment.name}: deletes endpoints left by failed or stopped runs or too old",
            resource_prefix=prefix,
            pipeline_arn=self.evaluation.pipeline_arn,
            key=self.storage.key,
        )
        # Aspects of the app do not reach into a Stage, and a delivery pipeline synthesizes its Stages
        # on its own: the Stage carries its checks wherever it is used.
        cdk.Aspects.of(self).add(AwsSolutionsChecks(verbose=True))
        cdk.Tags.of(self).add(TAG_ENVIRONMENT, environment.name)
        cdk.Tags.of(self).add(TAG_PIPELINE, pipeline_name)
        for key, value in self.guardrails.tags.items():
            cdk.Tags.of(self).add(key, value)
        if self.guardrails.permissions_boundary_arn is not None:
            # Every role of every stack here, including those CDK makes for its own custom resources.
            boundary = iam.ManagedPolicy.from_managed_policy_arn(
                self, "PermissionsBoundary", self.guardrails.permissions_boundary_arn
            )
            iam.PermissionsBoundary.of(self).apply(boundary)

    @property
    def stacks(self) -> list[cdk.Stack]:
        """The Stage's stacks in the order they are created, read from the construct tree so none is left out."""
        return [child for child in self.node.children if isinstance(child, cdk.Stack)]
