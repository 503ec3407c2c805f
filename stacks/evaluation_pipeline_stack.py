"""The evaluation pipeline of one environment: step image, step code, inputs, execution role, CfnPipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline_definitions.loading.account_guardrails import AccountGuardrails
from pipeline_definitions.loading.loader import LoadedConfig
from pipeline_definitions.planning.plan import build_plan
from stacks.components.evaluation_pipeline import EvaluationPipeline
from stacks.components.execution_role import EvaluationExecutionRole, StepCodeObject
from stacks.components.step_code_bundle import StepCodeBundle
from stacks.components.step_image import step_image
from stacks.components.uploads import (
    CATALOG_PREFIX,
    PromptCatalogUpload,
    TextObjectUpload,
    acknowledge_deployment_handler,
)
from step_code.contract.compute import is_gpu_instance
from step_code.contract.config import Config
from step_code.contract.files import CONFIG_FILE
from step_code.contract.locations import is_catalog_file

STEP_IMAGE_DIRECTORY = "step_code"


def uses_local_catalog_files(config: Config) -> bool:
    """Whether any file the steps read comes from the repository's prompt catalog rather than from S3."""
    locations = [config.dataset.input_data_location]
    locations += [m.responses_location or "" for m in config.models if not m.provider.calls_model]
    return any(is_catalog_file(location) for location in locations)


class EvaluationPipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        loaded: LoadedConfig,
        repo_root: Path,
        resource_prefix: str,
        pipeline_name: str,
        key: kms.IKey,
        data_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        model_package_groups: Sequence[str],
        guardrails: AccountGuardrails | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = loaded.config
        guardrails = guardrails or AccountGuardrails()
        self.step_image = step_image(self, "StepImage", directory=repo_root / STEP_IMAGE_DIRECTORY)
        # Built only when a step runs on a GPU instance; it lands in the same asset repository as the CPU image.
        self.gpu_step_image = (
            step_image(self, "GpuStepImage", directory=repo_root / STEP_IMAGE_DIRECTORY, gpu=True)
            if any(is_gpu_instance(step.instance_type) for step in build_plan(config).processing_steps)
            else None
        )
        self.step_code = StepCodeBundle(self, "StepCode", repo_root=repo_root)
        self.config_upload = TextObjectUpload(
            self,
            "Config",
            text=loaded.normalized_json(),
            file_name=CONFIG_FILE,
            prefix=f"{pipeline_name}/config/",
            bucket=artifacts_bucket,
            key=key,
        )
        self.catalog_upload: PromptCatalogUpload | None = None
        if uses_local_catalog_files(config):
            if loaded.catalog_dir is None:
                raise FileNotFoundError(f"{loaded.path}: the config reads local files but has no prompt catalog folder")
            self.catalog_upload = PromptCatalogUpload(
                self, "PromptCatalog", catalog_dir=loaded.catalog_dir, bucket=data_bucket, key=key
            )
            catalog_uri = self.catalog_upload.uri
        else:
            # The object itself, not its folder: the role reads exactly the s3:// locations the config names,
            # and an input on an object's key downloads that object under its base name.
            catalog_uri = config.dataset.input_data_location
        asset = self.step_code.asset
        self.execution_role = EvaluationExecutionRole(
            self,
            "ExecutionRole",
            config=config,
            resource_prefix=resource_prefix,
            key=key,
            data_bucket=data_bucket,
            catalog_prefix=CATALOG_PREFIX,
            artifacts_bucket=artifacts_bucket,
            step_code=StepCodeObject(bucket_name=asset.s3_bucket_name, object_key=asset.s3_object_key),
            image_repository=self.step_image.repository,
            model_package_groups=list(model_package_groups),
            vpcs=guardrails.vpcs,
            extra_key_arns=guardrails.extra_key_arns,
        )
        self.evaluation_pipeline = EvaluationPipeline(
            self,
            "EvaluationPipeline",
            config=config,
            pipeline_name=pipeline_name,
            resource_prefix=resource_prefix,
            role=self.execution_role.role,
            code_object_key=asset.s3_object_key,
            values={
                "ImageUri": self.step_image.image_uri,
                "RoleArn": self.execution_role.role.role_arn,
                "ArtifactsBucket": artifacts_bucket.bucket_name,
                "CodeBucket": asset.s3_bucket_name,
                "ConfigUri": self.config_upload.uri,
                "PromptCatalogUri": catalog_uri,
                "KmsKeyArn": key.key_arn,
                "Region": self.region,
                **({"GpuImageUri": self.gpu_step_image.image_uri} if self.gpu_step_image else {}),
            },
            artifacts_bucket=artifacts_bucket,
            key=key,
            guardrails=guardrails.definition,
        )
        # A run started right after deploy must find its config and catalog in place.
        pipeline = self.evaluation_pipeline.pipeline
        pipeline.node.add_dependency(self.config_upload.deployment)
        if self.catalog_upload is not None:
            pipeline.node.add_dependency(self.catalog_upload.deployment)
        # SageMaker puts the pipeline name into its ARN in lower case, as EventBridge events carry it.
        self.pipeline_arn = (
            f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:pipeline/{pipeline_name.lower()}"
        )
        acknowledge_deployment_handler(self)
