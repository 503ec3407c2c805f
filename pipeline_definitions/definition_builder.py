"""Builds the SageMaker pipeline of an evaluation plan from the sagemaker SDK's workflow classes.

Imported only inside `sagemaker_definition.render_definition`, because importing the SDK takes about a
second and pulls in pandas. Nothing here calls AWS: the session exists because the SDK's classes want
one, and it is built so that creating its clients never looks for credentials.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import boto3
import botocore.credentials
import botocore.session
from sagemaker.network import NetworkConfig
from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionEquals
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.parameters import ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.workflow.steps import CacheConfig, ProcessingStep

from pipeline_definitions import plan as p
from pipeline_definitions.config import Config

if TYPE_CHECKING:
    from pipeline_definitions.sagemaker_definition import RenderTargets

CONTAINER_INPUT_ROOT = "/opt/ml/processing/input"
CONTAINER_OUTPUT_ROOT = "/opt/ml/processing/output"
CODE_INPUT = "code"
DECISION_PROPERTY_FILE = "Decision"
PREPROCESS_CACHE_EXPIRY = "P30D"
VOLUME_SIZE_GB = 30

# How long each job may run. Finetune and deploy wait for a training job or an endpoint they start.
MAX_RUNTIME_SECONDS: dict[str, int] = {
    "preprocess": 3600,
    "deploy": 2 * 3600,
    "evaluate": 24 * 3600,
    "cleanup": 3600,
    "select": 3600,
    "register": 3600,
}
# Finetune waits for its training job (bounded by the config's max_run_seconds) and then stores the model.
FINETUNE_MARGIN_SECONDS = 2 * 3600

INPUT_NAME_RE = re.compile(r"[^A-Za-z0-9_-]")


def _offline_session(region: str) -> PipelineSession:
    botocore_session = botocore.session.Session()
    # An empty credential chain: creating the SDK's clients then never probes the environment, the
    # profile files or the instance metadata service, and rendering needs no credentials at all.
    botocore_session.register_component("credential_provider", botocore.credentials.CredentialResolver(providers=[]))
    session = PipelineSession(
        boto_session=boto3.Session(botocore_session=botocore_session, region_name=region),
        # Given a config, the SDK skips reading ~/.config/sagemaker/config.yaml, whose defaults (tags,
        # subnets, keys) would otherwise leak into the definition and make it depend on the machine.
        sagemaker_config={"SchemaVersion": "1.0"},
    )
    # An empty config then short-cuts every default lookup; a non-empty one is re-validated against
    # the SDK's config schema on each of them (hundreds per pipeline, seconds of CPU).
    session.sagemaker_config = {}
    return session


def _retry_policies() -> list[Any]:
    return [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            interval_seconds=10,
            backoff_rate=2.0,
            max_attempts=5,
        ),
        # Capacity for the job's instance type frees up over minutes, not seconds.
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
            ],
            interval_seconds=60,
            backoff_rate=2.0,
            max_attempts=5,
        ),
    ]


def container_input_name(name: str) -> str:
    """Processing input names allow letters, digits, `_` and `-`; plan names like `summaries/<model>` have `/`."""
    return INPUT_NAME_RE.sub("_", name)


def max_runtime_seconds(step: p.PlannedStep, config: Config) -> int:
    if step.kind == "finetune":
        if step.model is None:
            raise ValueError(f"finetune step {step.name} names no model")
        finetuning = config.model(step.model).finetuning
        if finetuning is None:
            raise ValueError(f"step {step.name}: model {step.model} has no finetuning config")
        return finetuning.parameters.max_run_seconds + FINETUNE_MARGIN_SECONDS
    return MAX_RUNTIME_SECONDS[step.kind]


class DefinitionBuilder:
    """One pipeline: the processing steps of the plan in order, then the policy check with register/fail."""

    def __init__(self, plan: p.EvaluationPlan, config: Config, targets: RenderTargets) -> None:
        self.plan = plan
        self.config = config
        self.targets = targets
        self.session = _offline_session(targets.region)
        self.parameters: dict[str, ParameterString] = {
            p.PARAM_PROMPT_CATALOG_URI: ParameterString(
                name=p.PARAM_PROMPT_CATALOG_URI, default_value=targets.prompt_catalog_uri
            ),
            p.PARAM_MODEL_APPROVAL_STATUS: ParameterString(
                name=p.PARAM_MODEL_APPROVAL_STATUS,
                default_value=p.DEFAULT_APPROVAL_STATUS,
                enum_values=list(p.APPROVAL_STATUSES),
            ),
        }
        self.decision_file = PropertyFile(name=DECISION_PROPERTY_FILE, output_name=p.DECISION, path=p.DECISION_FILE)
        self.steps: dict[str, ProcessingStep] = {}
        self.network_config = (
            NetworkConfig(security_group_ids=list(targets.security_group_ids), subnets=list(targets.subnets))
            if targets.subnets
            else None
        )

    def build(self) -> Pipeline:
        for planned in self.plan.processing_steps:
            self.steps[planned.name] = self._processing_step(planned)
        register = self.steps.pop(self.plan.register.name)
        return Pipeline(
            name=self.targets.pipeline_name,
            parameters=list(self.parameters.values()),
            steps=[*self.steps.values(), self._policy_check(register)],
            sagemaker_session=self.session,
            pipeline_experiment_config=None,
        )

    def _policy_check(self, register: ProcessingStep) -> ConditionStep:
        # Any: the SDK annotates condition operands without JsonGet, though JsonGet is how they read files.
        def decision(path: str) -> Any:
            return JsonGet(step_name=self.plan.select.name, property_file=self.decision_file, json_path=path)

        fail = FailStep(
            name=p.FAIL_STEP,
            error_message=Join(on=" ", values=["Selection policy not met:", decision(p.DECISION_REASON)]),
        )
        return ConditionStep(
            name=p.CHECK_STEP,
            conditions=[ConditionEquals(left=decision(p.DECISION_MEETS_POLICY), right=True)],
            if_steps=[register],
            else_steps=[fail],
        )

    def _processing_step(self, step: p.PlannedStep) -> ProcessingStep:
        targets = self.targets
        processor = Processor(
            role=targets.role_arn,
            image_uri=targets.image_uri,
            instance_count=1,
            instance_type=step.instance_type,
            entrypoint=["python3", "-m", f"step_code.{step.kind}"],
            volume_size_in_gb=VOLUME_SIZE_GB,
            volume_kms_key=targets.kms_key_arn,
            output_kms_key=targets.kms_key_arn,
            max_runtime_in_seconds=max_runtime_seconds(step, self.config),
            sagemaker_session=self.session,
            env={
                "PYTHONPATH": f"{CONTAINER_INPUT_ROOT}/{CODE_INPUT}/{targets.code_file_name}",
                "EVALOPS_RESOURCE_PREFIX": targets.resource_prefix,
                "AWS_DEFAULT_REGION": targets.region,
                "EVALOPS_KMS_KEY_ARN": targets.kms_key_arn,
                # The control-plane steps name, tag and store what they create with these.
                "EVALOPS_ARTIFACTS_URI": f"s3://{targets.artifacts_bucket}",
                "EVALOPS_ROLE_ARN": targets.role_arn,
                "EVALOPS_EXECUTION_ARN": ExecutionVariables.PIPELINE_EXECUTION_ARN,
                # Relative fine-tuning data paths live in the prompt catalog, the one data prefix the role reads.
                "EVALOPS_DATA_URI": self.parameters[p.PARAM_PROMPT_CATALOG_URI],
            },
            network_config=self.network_config,
        )
        arguments = p.step_arguments(
            step,
            CONTAINER_INPUT_ROOT,
            CONTAINER_OUTPUT_ROOT,
            execution_id=ExecutionVariables.PIPELINE_EXECUTION_ID,
            approval_status=self.parameters[p.PARAM_MODEL_APPROVAL_STATUS],
            cache_uri=f"s3://{targets.artifacts_bucket}/{targets.pipeline_name}/response-cache",
        )
        step_args = processor.run(inputs=self._inputs(step), outputs=self._outputs(step), arguments=arguments)
        return ProcessingStep(
            name=step.name,
            step_args=step_args,
            depends_on=list(step.after) or None,
            retry_policies=_retry_policies(),
            cache_config=CacheConfig(enable_caching=True, expire_after=PREPROCESS_CACHE_EXPIRY)
            if step.cacheable
            else None,
            property_files=[self.decision_file] if step.name == self.plan.select.name else None,
        )

    def _inputs(self, step: p.PlannedStep) -> list[ProcessingInput]:
        inputs = [
            ProcessingInput(
                input_name=CODE_INPUT, source=self.targets.code_uri, destination=f"{CONTAINER_INPUT_ROOT}/{CODE_INPUT}"
            )
        ]
        for item in step.inputs:
            inputs.append(
                ProcessingInput(
                    input_name=container_input_name(item.name),
                    source=self._input_source(step, item),
                    destination=f"{CONTAINER_INPUT_ROOT}/{item.name}",
                )
            )
        names = [i.input_name for i in inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"step {step.name}: input names collide in the container: {names}")
        return inputs

    def _input_source(self, step: p.PlannedStep, item: p.StepInput) -> Any:
        if item.step is not None:
            if item.step not in self.steps:
                raise ValueError(f"step {step.name} reads {item.name} from {item.step}, which is not planned before it")
            if item.output not in self.plan.step(item.step).outputs:
                raise ValueError(f"step {step.name} reads output {item.output!r}, which {item.step} does not write")
            return self.steps[item.step].properties.ProcessingOutputConfig.Outputs[item.output].S3Output.S3Uri
        if item.parameter is not None:
            if item.parameter not in self.parameters:
                raise ValueError(f"step {step.name} reads undeclared pipeline parameter {item.parameter!r}")
            return self.parameters[item.parameter]
        if item.name == p.CONFIG_INPUT:
            return self.targets.config_uri
        raise ValueError(f"step {step.name}: input {item.name!r} has no source")

    def _outputs(self, step: p.PlannedStep) -> list[ProcessingOutput]:
        return [
            ProcessingOutput(
                output_name=name,
                source=f"{CONTAINER_OUTPUT_ROOT}/{name}",
                # "s3:/" joined with "/" gives the "s3://" scheme.
                destination=Join(
                    on="/",
                    values=[
                        "s3:/",
                        self.targets.artifacts_bucket,
                        self.targets.pipeline_name,
                        "runs",
                        ExecutionVariables.PIPELINE_EXECUTION_ID,
                        step.name,
                        name,
                    ],
                ),
            )
            for name in step.outputs
        ]
