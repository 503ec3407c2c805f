"""The SageMaker pipeline resource: the rendered definition with CloudFormation values filled in.

A definition small enough goes into the template as an `Fn::Sub` body. A larger one (many models) is
written to the artifacts bucket on deploy, values substituted there, and the pipeline reads it from S3,
so the template stays far below CloudFormation's size limit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from aws_cdk import Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.rendering.sagemaker_definition import Guardrails, render_for_cloudformation
from stacks.components.uploads import HASH_LENGTH, TextObjectUpload
from step_code.contract.config import Config

# Above this the definition is deployed to S3 instead of being inlined (CloudFormation templates are
# limited to 1 MB, SageMaker definitions to 1 MiB, and a large inline body makes every diff unreadable).
MAX_INLINE_DEFINITION_BYTES = 50_000
DEFINITION_FILE = "definition.json"
# `${Name}` is substituted; `${!` is Fn::Sub's escape for a literal `${`.
_FN_SUB_REFERENCE = re.compile(r"\$\{(?:(!)|([A-Za-z0-9_]+)\})")


def compact(body: str) -> str:
    """The definition without indentation: the same JSON (and the same `${...}` references), fewer bytes."""
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)


def substitute(template: str, values: Mapping[str, str]) -> str:
    """What `Fn::Sub` makes of `template`, for a template only ever handed to Python (values may be tokens)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${"
        name = match.group(2)
        if name not in values:
            raise KeyError(f"the definition references ${{{name}}}, which has no value")
        return values[name]

    return _FN_SUB_REFERENCE.sub(replace, template)


class EvaluationPipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        pipeline_name: str,
        resource_prefix: str,
        role: iam.IRole,
        code_object_key: str,
        values: Mapping[str, str],
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
        max_inline_bytes: int = MAX_INLINE_DEFINITION_BYTES,
        guardrails: Guardrails | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        plan = build_plan(config)
        definition = render_for_cloudformation(
            plan,
            config,
            code_object_key=code_object_key,
            pipeline_name=pipeline_name,
            resource_prefix=resource_prefix,
            guardrails=guardrails,
        )
        body = compact(definition.body)
        missing = sorted(set(definition.variables) - set(values))
        if missing:
            raise KeyError(f"the pipeline definition needs values for {', '.join(missing)}")
        used = {name: values[name] for name in definition.variables}
        self.definition_upload: TextObjectUpload | None = None
        if len(body.encode()) <= max_inline_bytes:
            pipeline_definition: dict[str, object] = {"PipelineDefinitionBody": Fn.sub(body, used)}
        else:
            # The object key must change whenever the substituted text would, or CloudFormation would
            # see no change to the pipeline: hash the template together with how each value resolves.
            resolved = json.dumps(Stack.of(self).resolve(used), sort_keys=True)
            content_id = hashlib.sha256((body + resolved).encode()).hexdigest()[:HASH_LENGTH]
            self.definition_upload = TextObjectUpload(
                self,
                "Definition",
                text=substitute(body, used),
                file_name=DEFINITION_FILE,
                prefix=f"{pipeline_name}/definition/",
                bucket=artifacts_bucket,
                key=key,
                content_id=content_id,
            )
            pipeline_definition = {
                "PipelineDefinitionS3Location": {
                    "Bucket": artifacts_bucket.bucket_name,
                    "Key": self.definition_upload.object_key,
                }
            }
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description=config.pipeline.description or None,
            role_arn=role.role_arn,
            pipeline_definition=pipeline_definition,
            parallelism_configuration={"MaxParallelExecutionSteps": definition.max_parallel_execution_steps},
        )
        if self.definition_upload is not None:
            self.pipeline.node.add_dependency(self.definition_upload.deployment)
