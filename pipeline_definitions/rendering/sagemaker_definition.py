"""The evaluation plan as a SageMaker pipeline definition (JSON), rendered offline and deterministically.

`render_definition` returns the definition for concrete values (`RenderTargets`).
`render_for_cloudformation` returns it as an `Fn::Sub` template for the stack, whose values are CDK tokens:
the body holds `${Variable}` where these go, and `variables` lists the ones it uses, out of:

  ImageUri          the step image URI
  RoleArn           the role the processing jobs run as
  ArtifactsBucket   bucket name of the run outputs and the response cache
  CodeBucket        bucket name holding the step code bundle at the given `code_object_key`
  ConfigUri         s3 URI of the normalized config; the object must be named config.json (or the URI is a
                    prefix holding config.json), because the steps read <input>/config/config.json
  PromptCatalogUri  default of the PromptCatalogUri pipeline parameter: the s3 prefix of the catalog folder,
                    or the dataset object's own URI when the dataset is an s3:// object (preprocess reads
                    <catalog input>/<base name of the dataset>, where SageMaker puts that object)
  KmsKeyArn         the key of job volumes, job outputs, and of what step code writes (EVALOPS_KMS_KEY_ARN)
  Region            the stack's region (AWS_DEFAULT_REGION of the jobs)

The environment's guardrails (`Guardrails`) are concrete values from `configs/environments.yaml` (and the SDK
defaults file it names), rendered as they are: the processing jobs' VpcConfig, keys and tags, and for the
steps that create SageMaker resources the job environment that carries the rest (`JobGuardrails`).

Every other `${` in the body is written `${!`, which `Fn::Sub` turns back into `${`.
The pipeline's parallelism is a property of the pipeline resource, not of the definition; it comes with
the result (`max_parallel_execution_steps`).

Importing this module is cheap: the sagemaker SDK is imported inside the render functions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipeline_definitions.planning.plan import EvaluationPlan
from pipeline_definitions.rendering import definition_placeholders as ph
from step_code.contract.config import Config
from step_code.contract.files import CONFIG_FILE
from step_code.contract.job_env import JobGuardrails, Vpc
from step_code.contract.locations import is_s3

# The SDK logs "sagemaker.config INFO - Not applying SDK defaults ..." to stdout from its import on,
# unless its logger already has a level; and per step it logs that it leaves out the job name.
SDK_CONFIG_LOGGER = "sagemaker.config"
SDK_STEP_LOGGER = "sagemaker.workflow.utilities"


@dataclass(frozen=True)
class Guardrails:
    """An environment's network, key and tag settings (`pipeline_definitions/loading/account_guardrails.py`)."""

    processing_vpc: Vpc | None = None
    # None: the environment's key (`kms_key_arn`).
    processing_volume_kms_key_arn: str | None = None
    processing_output_kms_key_arn: str | None = None
    # What finetune, deploy and register create; its tags go on the processing jobs too.
    resources: JobGuardrails = field(default_factory=JobGuardrails)


@dataclass(frozen=True)
class RenderTargets:
    image_uri: str
    role_arn: str
    artifacts_bucket: str
    code_uri: str
    config_uri: str
    prompt_catalog_uri: str
    kms_key_arn: str
    region: str
    resource_prefix: str
    pipeline_name: str
    guardrails: Guardrails = field(default_factory=Guardrails)
    # The GPU variant of the step image, for steps on GPU instances (judge models on the GPU).
    gpu_image_uri: str | None = None

    def __post_init__(self) -> None:
        for label, uri in (
            ("code_uri", self.code_uri),
            ("config_uri", self.config_uri),
            ("prompt_catalog_uri", self.prompt_catalog_uri),
        ):
            if not is_s3(uri) or len(uri.split("/", 3)) < 4:
                raise ValueError(f"render targets: {label} {uri!r} is not an s3://bucket/key URI")
        if self.code_uri.endswith("/"):
            raise ValueError(
                f"render targets: code_uri {self.code_uri!r} must name the code bundle object, not a prefix"
            )
        if not (self.config_uri.endswith("/") or self.config_uri.endswith(f"/{CONFIG_FILE}")):
            raise ValueError(
                f"render targets: config_uri {self.config_uri!r} must be an object named {CONFIG_FILE} "
                "or a prefix holding it"
            )
        vpc = self.guardrails.processing_vpc
        if vpc is not None and not (vpc.subnets and vpc.security_group_ids):
            raise ValueError("render targets: a processing VPC needs both subnets and security group ids")

    @property
    def code_file_name(self) -> str:
        """Name of the code bundle in the container: a processing input keeps the object's name."""
        return self.code_uri.rsplit("/", 1)[1]


@dataclass(frozen=True)
class CloudFormationDefinition:
    body: str
    variables: tuple[str, ...]
    max_parallel_execution_steps: int


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Silence the SDK's per-step notices (job name left out, "No Wait" in a PipelineSession) while rendering."""
    logger = logging.getLogger(SDK_STEP_LOGGER)
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running within a PipelineSession", category=UserWarning)
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def render_definition(plan: EvaluationPlan, config: Config, targets: RenderTargets) -> str:
    """The pipeline definition JSON; the same inputs give the same bytes in any process."""
    config_logger = logging.getLogger(SDK_CONFIG_LOGGER)
    if config_logger.level == logging.NOTSET:
        config_logger.setLevel(logging.WARNING)
    with _quiet_sdk():
        from pipeline_definitions.rendering.definition_builder import DefinitionBuilder

        definition = json.loads(DefinitionBuilder(plan, config, targets).build().definition())
    # The SDK writes `"PipelineExperimentConfig": null` when there is none; leave the key out instead.
    if definition.get("PipelineExperimentConfig") is None:
        definition.pop("PipelineExperimentConfig", None)
    return json.dumps(definition, indent=1, sort_keys=False) + "\n"


def render_for_cloudformation(
    plan: EvaluationPlan,
    config: Config,
    *,
    code_object_key: str,
    pipeline_name: str,
    resource_prefix: str,
    guardrails: Guardrails | None = None,
) -> CloudFormationDefinition:
    """The definition as an `Fn::Sub` template: `Fn.sub(body, {variable: value for variable in variables})`."""
    for label, value in (
        ("code_object_key", code_object_key),
        ("pipeline_name", pipeline_name),
        ("resource_prefix", resource_prefix),
    ):
        ph.check_free_of_placeholders(label, value)
    ph.check_data_free_of_placeholders("config", config.model_dump(mode="json", by_alias=True))
    if guardrails is not None:
        # Through JSON: the checker walks lists, and the dataclasses hold tuples.
        ph.check_data_free_of_placeholders("guardrails", json.loads(json.dumps(dataclasses.asdict(guardrails))))
    targets = RenderTargets(
        image_uri=ph.IMAGE_URI.value,
        role_arn=ph.ROLE_ARN.value,
        artifacts_bucket=ph.ARTIFACTS_BUCKET.value,
        code_uri=f"s3://{ph.CODE_BUCKET.value}/{code_object_key}",
        config_uri=ph.CONFIG_URI.value,
        prompt_catalog_uri=ph.PROMPT_CATALOG_URI.value,
        kms_key_arn=ph.KMS_KEY_ARN.value,
        region=ph.REGION.value,
        resource_prefix=resource_prefix,
        pipeline_name=pipeline_name,
        gpu_image_uri=ph.GPU_IMAGE_URI.value,
        guardrails=guardrails or Guardrails(),
    )
    body, variables = ph.to_fn_sub_template(render_definition(plan, config, targets))
    return CloudFormationDefinition(
        body=body, variables=variables, max_parallel_execution_steps=plan.max_parallel_steps
    )
