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
from sagemaker.utils import instance_supports_kms
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

from pipeline_definitions.planning import plan as p
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from step_code.contract import files
from step_code.contract.compute import is_gpu_instance
from step_code.contract.config import Config
from step_code.contract.job_env import (
    ARTIFACTS_URI_ENV,
    DATA_URI_ENV,
    EXECUTION_ARN_ENV,
    KMS_KEY_ENV,
    RESOURCE_PREFIX_ENV,
    ROLE_ARN_ENV,
)
from step_code.contract.locations import is_s3

if TYPE_CHECKING:
    from sagemaker.workflow.step_collections import StepCollection
    from sagemaker.workflow.steps import Step

    from pipeline_definitions.rendering.sagemaker_definition import RenderTargets

CONTAINER_INPUT_ROOT = "/opt/ml/processing/input"
CONTAINER_OUTPUT_ROOT = "/opt/ml/processing/output"
CODE_INPUT = "code"
DECISION_PROPERTY_FILE = "Decision"
PREPROCESS_CACHE_EXPIRY = "P30D"
VOLUME_SIZE_GB = 30
# CreateProcessingJob accepts at most this many ProcessingInputs.
MAX_PROCESSING_INPUTS = 10
# Every evaluate step writes its output to runs/<execution>/evaluations/<model>/, so select and register
# read all of them through one input (one per model would pass the input limit with 8 models).
EVALUATIONS_PREFIX = "evaluations"

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


# The kinds that write a model's evaluation (summaries/<model>): evaluate, or the merge of its shards.
EVALUATION_KINDS = ("evaluate", "merge")


def container_input_name(name: str) -> str:
    """Processing input names allow letters, digits, `_` and `-`; plan input names are folder paths."""
    return INPUT_NAME_RE.sub("_", name)


def max_runtime_seconds(step: p.PlannedStep, config: Config) -> int:
    limit = STEP_KINDS[step.kind].max_runtime_seconds
    if limit is not None:
        return limit
    # The one kind without a fixed limit waits for a training job its config bounds, then stores the model.
    finetuning = config.model(step.model).finetuning if step.model is not None else None
    if finetuning is None:
        raise ValueError(f"step {step.name}: a {step.kind} step needs a model with a finetuning config")
    return finetuning.parameters.max_run_seconds + FINETUNE_MARGIN_SECONDS


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
                default_value=files.DEFAULT_APPROVAL_STATUS,
                enum_values=list(files.APPROVAL_STATUSES),
            ),
            p.PARAM_RESPONSE_CACHE: ParameterString(
                name=p.PARAM_RESPONSE_CACHE,
                default_value=files.RESPONSE_CACHE_USE,
                enum_values=list(files.RESPONSE_CACHE_MODES),
            ),
        }
        self.decision_file = PropertyFile(
            name=DECISION_PROPERTY_FILE, output_name=files.DECISION, path=files.DECISION_FILE
        )
        self.steps: dict[str, ProcessingStep] = {}
        vpc = targets.guardrails.processing_vpc
        # Never isolated: every step calls S3 or SageMaker, and evaluate calls the models.
        self.network_config = (
            NetworkConfig(
                enable_network_isolation=False,
                security_group_ids=list(vpc.security_group_ids),
                subnets=list(vpc.subnets),
            )
            if vpc is not None
            else None
        )
        resources = targets.guardrails.resources
        self.resource_guardrails_env = resources.to_environment()
        self.tags: list[dict[str, Any]] | None = [{"Key": key, "Value": value} for key, value in resources.tags] or None

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
            error_message=Join(on=" ", values=["Selection policy not met:", decision(files.DECISION_REASON)]),
        )
        return ConditionStep(
            name=p.CHECK_STEP,
            conditions=[ConditionEquals(left=decision(files.DECISION_MEETS_POLICY), right=True)],
            if_steps=[register],
            else_steps=[fail],
        )

    def _environment(self, step: p.PlannedStep) -> dict[str, Any]:
        targets = self.targets
        run_values: dict[str, Any] = {
            RESOURCE_PREFIX_ENV: targets.resource_prefix,
            ROLE_ARN_ENV: targets.role_arn,
            EXECUTION_ARN_ENV: ExecutionVariables.PIPELINE_EXECUTION_ARN,
            # One tree per deployed pipeline: run artifacts go to <pipeline>/artifacts/<execution>/.
            ARTIFACTS_URI_ENV: f"s3://{targets.artifacts_bucket}/{targets.pipeline_name}",
            # Relative fine-tuning data paths live in the prompt catalog, the one data prefix the role reads.
            DATA_URI_ENV: self.parameters[p.PARAM_PROMPT_CATALOG_URI],
        }
        spec = STEP_KINDS[step.kind]
        return {
            "PYTHONPATH": f"{CONTAINER_INPUT_ROOT}/{CODE_INPUT}/{targets.code_file_name}",
            "AWS_DEFAULT_REGION": targets.region,
            KMS_KEY_ENV: targets.kms_key_arn,
            **{name: run_values[name] for name in spec.environment},
            **(self.resource_guardrails_env if spec.creates_resources else {}),
        }

    def _cacheable(self, step: p.PlannedStep) -> bool:
        # An s3:// dataset can change at its fixed URI without the definition changing; the uploaded
        # catalog sits under a content hash, so a cached result of it stays right.
        return step.cacheable and not is_s3(self.config.dataset.input_data_location)

    def _processing_step(self, step: p.PlannedStep) -> ProcessingStep:
        targets = self.targets
        guardrails = targets.guardrails
        processor = Processor(
            role=targets.role_arn,
            image_uri=self._image_uri(step),
            instance_count=step.instance_count,
            instance_type=step.instance_type,
            entrypoint=["python3", "-m", STEP_KINDS[step.kind].entry_module],
            volume_size_in_gb=VOLUME_SIZE_GB,
            # SageMaker refuses a volume key for instance types with local NVMe storage, which their hardware
            # encrypts; the SDK's rule (family with a "d", g5, g6, p5, trn1) tells them apart.
            volume_kms_key=(guardrails.processing_volume_kms_key_arn or targets.kms_key_arn)
            if instance_supports_kms(step.instance_type)
            else None,
            output_kms_key=guardrails.processing_output_kms_key_arn or targets.kms_key_arn,
            max_runtime_in_seconds=max_runtime_seconds(step, self.config),
            sagemaker_session=self.session,
            env=self._environment(step),
            network_config=self.network_config,
            tags=self.tags,
        )
        arguments = p.step_arguments(
            step,
            CONTAINER_INPUT_ROOT,
            CONTAINER_OUTPUT_ROOT,
            execution_id=ExecutionVariables.PIPELINE_EXECUTION_ID,
            approval_status=self.parameters[p.PARAM_MODEL_APPROVAL_STATUS],
            cache_uri=f"s3://{targets.artifacts_bucket}/{targets.pipeline_name}/response-cache",
            response_cache=self.parameters[p.PARAM_RESPONSE_CACHE],
        )
        step_args = processor.run(inputs=self._inputs(step), outputs=self._outputs(step), arguments=arguments)
        # Summaries are read from the evaluations prefix, not through the evaluate steps' properties, so
        # the wait for those steps must be explicit; Register runs inside the condition on Select's decision,
        # which has already waited for them.
        summary_sources = self._summary_sources(step)
        depends_on: list[str | Step | StepCollection] = [
            *step.after,
            *(summary_sources if step.kind != "register" else []),
        ]
        return ProcessingStep(
            name=step.name,
            step_args=step_args,
            depends_on=depends_on or None,
            retry_policies=_retry_policies(),
            cache_config=CacheConfig(enable_caching=True, expire_after=PREPROCESS_CACHE_EXPIRY)
            if self._cacheable(step)
            else None,
            property_files=[self.decision_file] if step.name == self.plan.select.name else None,
        )

    def _image_uri(self, step: p.PlannedStep) -> str:
        if not is_gpu_instance(step.instance_type):
            return self.targets.image_uri
        if self.targets.gpu_image_uri is None:
            raise ValueError(f"step {step.name} runs on GPU instance {step.instance_type}: give gpu_image_uri")
        return self.targets.gpu_image_uri

    def _summary_sources(self, step: p.PlannedStep) -> list[str]:
        """The evaluate steps whose `summaries/<model>` inputs the step reads, checked to write where it looks."""
        sources: list[str] = []
        for item in step.inputs:
            if not item.name.startswith(f"{files.SUMMARIES}/"):
                continue
            if item.step is None or item.step not in self.steps or item.output != files.EVALUATION:
                raise ValueError(f"step {step.name}: {item.name} must be an evaluation planned before it")
            source = self.plan.step(item.step)
            if source.kind not in EVALUATION_KINDS or item.name != f"{files.SUMMARIES}/{source.model}":
                raise ValueError(f"step {step.name}: {item.name} reads {source.name}, not the evaluation of that model")
            sources.append(source.name)
        return sources

    def _inputs(self, step: p.PlannedStep) -> list[ProcessingInput]:
        inputs = [
            ProcessingInput(
                input_name=CODE_INPUT, source=self.targets.code_uri, destination=f"{CONTAINER_INPUT_ROOT}/{CODE_INPUT}"
            )
        ]
        for item in step.inputs:
            if item.name.startswith(f"{files.SUMMARIES}/"):
                continue
            inputs.append(
                ProcessingInput(
                    input_name=container_input_name(item.name),
                    source=self._input_source(step, item),
                    destination=f"{CONTAINER_INPUT_ROOT}/{item.name}",
                    s3_data_distribution_type="ShardedByS3Key" if item.sharded else "FullyReplicated",
                )
            )
        if self._summary_sources(step):
            inputs.append(
                ProcessingInput(
                    input_name=files.SUMMARIES,
                    # The trailing "/" keeps <model>/ folders in the download (a prefix ending mid-name would not).
                    source=self._run_uri(f"{EVALUATIONS_PREFIX}/"),
                    destination=f"{CONTAINER_INPUT_ROOT}/{files.SUMMARIES}",
                )
            )
        names = [i.input_name for i in inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"step {step.name}: input names collide in the container: {names}")
        if len(inputs) > MAX_PROCESSING_INPUTS:
            raise ValueError(
                f"step {step.name} would have {len(inputs)} processing inputs ({', '.join(map(str, names))}); "
                f"SageMaker allows at most {MAX_PROCESSING_INPUTS}"
            )
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
        if item.name == files.CONFIG_INPUT:
            return self.targets.config_uri
        raise ValueError(f"step {step.name}: input {item.name!r} has no source")

    def _run_uri(self, *parts: str) -> Join:
        """`s3://<artifacts bucket>/<pipeline>/runs/<execution id>/<parts...>`, the run's scratch space."""
        # "s3:/" joined with "/" gives the "s3://" scheme.
        return Join(
            on="/",
            values=[
                "s3:/",
                self.targets.artifacts_bucket,
                self.targets.pipeline_name,
                "runs",
                ExecutionVariables.PIPELINE_EXECUTION_ID,
                *parts,
            ],
        )

    def _output_uri(self, step: p.PlannedStep, name: str) -> Join:
        if step.kind in EVALUATION_KINDS and name == files.EVALUATION:
            if step.model is None:
                raise ValueError(f"evaluate step {step.name} names no model")
            return self._run_uri(EVALUATIONS_PREFIX, step.model)
        return self._run_uri(step.name, name)

    def _outputs(self, step: p.PlannedStep) -> list[ProcessingOutput]:
        return [
            ProcessingOutput(
                output_name=name, source=f"{CONTAINER_OUTPUT_ROOT}/{name}", destination=self._output_uri(step, name)
            )
            for name in step.outputs
        ]
