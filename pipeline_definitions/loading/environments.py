"""Deployment environments as data: `configs/environments.yaml`, one CDK Stage per entry.

Read by the stacks (`cdk synth`) and by `evalops plan --env`, which shows an environment's guardrails and
prices its warm-pool default; so it sits below both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline_definitions.loading.loader import ConfigError, YamlIndex, read_yaml_mapping
from pipeline_definitions.loading.validation import Finding
from step_code.contract.config import MAX_KEEP_ALIVE_SECONDS

# Resource names are `{prefix}-{name}-{component}`. Neither part may hold the hyphen that delimits them, so
# `{prefix}-{name}-` is never the start of another environment's names (with `dev` and `dev-b` it would be,
# and IAM policies on `evalops-dev-*` would reach `evalops-dev-b-*`).
RESOURCE_NAME_DELIMITER = "-"
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,14}$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
DELIVERY_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
BRANCH_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9._/-]+$")
CONNECTION_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
)
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
POLICY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/([\w+=,.@-]+/)*[\w+=,.@-]+$")
# SageMaker's tag key pattern, less the prefixes AWS and the run's own tags use.
TAG_KEY_RE = re.compile(r"^(?!aws:)(?!evalops:)[\w\s.:/=+@-]{1,128}$")
TAG_VALUE_RE = re.compile(r"^[\w\s.:/=+@-]{0,256}$")
# SageMaker allows 50 tags per resource. A kept endpoint carries up to 11 of the run's own (step_code/contract/
# tags.py) plus one `evalops:in-use-by:<execution id>` per execution using it at the time: 30 leave room for 9.
MAX_EXTRA_TAGS = 30
# What a processing job's environment value holds, where the step code receives the subnets.
MAX_JOINED_IDS = 256
# CodePipeline V2 accepts at most 8 include patterns per file-path filter.
MAX_TRIGGER_PATHS = 8
# Everything that changes what gets deployed or evaluated: configs, prompts, step code, infrastructure code,
# and what the build installs (Python requirements, the project, the pinned npm CLIs, the set-up script).
# CodePipeline globs take `{a,b}` groups, which keep the root files within the limit of 8 patterns.
DEFAULT_TRIGGER_PATHS = (
    "configs/**",
    "prompt_catalog/**",
    "step_code/**",
    "pipeline_definitions/**",
    "stacks/**",
    "requirements/**",
    "scripts/**",
    "{app.py,cdk.json,package.json,package-lock.json,pyproject.toml}",
)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A validator that accepts a string the pattern matches, else says `'<value>' is not <what>`."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


EnvName = Annotated[
    str,
    AfterValidator(
        _matching(
            ENV_NAME_RE,
            "a valid environment name (expected 1-15 of a-z 0-9, starting a-z; no hyphen, it delimits resource names)",
        )
    ),
]
NamePrefix = Annotated[
    str,
    AfterValidator(
        _matching(
            PREFIX_RE,
            "a valid name prefix (expected 1-16 of a-z 0-9, starting a-z; no hyphen, it delimits resource names)",
        )
    ),
]
AccountId = Annotated[str, AfterValidator(_matching(ACCOUNT_RE, "an AWS account id (expected 12 digits)"))]
Region = Annotated[str, AfterValidator(_matching(REGION_RE, "an AWS region name (expected e.g. us-east-1)"))]
DeliveryName = Annotated[
    str, AfterValidator(_matching(DELIVERY_NAME_RE, "a valid pipeline name (expected 1-32 of a-z 0-9 -, starting a-z)"))
]
Repository = Annotated[str, AfterValidator(_matching(REPOSITORY_RE, "a repository (expected owner/name)"))]
Branch = Annotated[str, AfterValidator(_matching(BRANCH_RE, "a git branch name"))]
SubnetId = Annotated[str, AfterValidator(_matching(SUBNET_RE, "a subnet id (expected subnet-<hex>)"))]
SecurityGroupId = Annotated[
    str, AfterValidator(_matching(SECURITY_GROUP_RE, "a security group id (expected sg-<hex>)"))
]
KmsKeyArn = Annotated[
    str,
    AfterValidator(
        _matching(KMS_KEY_ARN_RE, "a KMS key ARN (expected arn:aws:kms:REGION:ACCOUNT:key/ID; IAM grants keys by ARN)")
    ),
]
PolicyArn = Annotated[
    str, AfterValidator(_matching(POLICY_ARN_RE, "a managed policy ARN (expected arn:aws:iam::ACCOUNT:policy/NAME)"))
]
TagKey = Annotated[
    str, AfterValidator(_matching(TAG_KEY_RE, "a tag key (1-128 characters, not starting aws: or evalops:)"))
]
TagValue = Annotated[str, AfterValidator(_matching(TAG_VALUE_RE, "a tag value (0-256 characters)"))]
ConnectionArn = Annotated[
    str,
    AfterValidator(
        _matching(CONNECTION_ARN_RE, "a connection ARN (expected arn:aws:codeconnections:REGION:ACCOUNT:connection/ID)")
    ),
]


class VpcSettings(BaseModel):
    """A SageMaker VpcConfig: where the network interfaces of jobs and models go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnets: tuple[SubnetId, ...] = Field(min_length=1, max_length=16)
    security_group_ids: tuple[SecurityGroupId, ...] = Field(min_length=1, max_length=5)

    @field_validator("subnets", "security_group_ids")
    @classmethod
    def _fits_job_environment(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(",".join(value)) > MAX_JOINED_IDS:
            raise ValueError(
                f"{len(value)} ids are {len(','.join(value))} characters comma-separated; the steps receive them in "
                f"a job environment value of at most {MAX_JOINED_IDS} (expected at most 10 subnets)"
            )
        if len(set(value)) != len(value):
            raise ValueError("an id is listed twice")
        return value


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: EnvName = Field(description="Short environment name, part of every resource name.")
    account: AccountId | None = Field(default=None, description="12-digit AWS account id (None: the CLI's account).")
    region: Region = "us-east-1"
    prefix: NamePrefix = Field(default="evalops", description="Name prefix: resources are named {prefix}-{name}-...")
    config: str = Field(description="Evaluation config this environment runs, relative to the repo root.")
    manual_approval: bool = Field(default=False, description="Delivery: ask for approval before deploying here.")
    # Account guardrails (account_guardrails.py beside this module resolves them with the SDK defaults file).
    vpc: VpcSettings | None = Field(
        default=None, description="Subnets and security groups of processing jobs, training jobs and models."
    )
    network_isolation: bool | None = Field(
        default=None,
        description="Training jobs and models run without network access (processing jobs call AWS APIs: never).",
    )
    volume_kms_key_arn: KmsKeyArn | None = Field(
        default=None, description="Key of job and endpoint storage volumes (default: the environment's key)."
    )
    output_kms_key_arn: KmsKeyArn | None = Field(
        default=None, description="Key of processing and training job outputs (default: the environment's key)."
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_EXTRA_TAGS,
        description="Extra tags on every stack resource and on everything a run creates.",
    )
    permissions_boundary_arn: PolicyArn | None = Field(
        default=None, description="Managed policy set as permissions boundary of every role the stacks create."
    )
    warm_pool_keep_alive_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_KEEP_ALIVE_SECONDS,
        description="Warm-pool keep-alive of the training jobs of fine-tunings that set no "
        "finetuning.parameters.keep_alive_period_in_seconds (billed while idle).",
    )
    sagemaker_defaults: str | None = Field(
        default=None,
        description="SageMaker SDK defaults file (SchemaVersion 1.0), relative to the repo root; values set here win.",
    )

    @property
    def resource_prefix(self) -> str:
        """`{prefix}-{name}-`: the start of every name this environment creates; IAM policies match on it."""
        return f"{self.prefix}{RESOURCE_NAME_DELIMITER}{self.name}{RESOURCE_NAME_DELIMITER}"

    def config_path(self, repo_root: Path) -> Path:
        return repo_root / self.config


class PromptCatalogBucket(BaseModel):
    """A prompt catalog kept in S3 (a versioned bucket in the tooling account), for teams that do not use git."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(description="Versioned S3 bucket in the delivery (tooling) account and region.")
    key: str = Field(description="Object key of a .zip holding the catalog files; they overlay prompt_catalog/.")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not BUCKET_RE.match(value) or ".." in value:
            raise ValueError(f"{value!r} is not an S3 bucket name (expected 3-63 of a-z 0-9 . -)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not value.endswith(".zip") or value.startswith("/"):
            raise ValueError(f"{value!r} is not a usable source object key (expected a relative key ending in .zip)")
        return value


class DeliverySettings(BaseModel):
    """The delivery pipeline: CodePipeline V2 in a tooling account that deploys the environments in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DeliveryName = Field(default="evalops-delivery", description="Pipeline name; also starts its IAM role names.")
    account: AccountId = Field(description="12-digit id of the tooling account that hosts the pipeline.")
    region: Region = "us-east-1"
    repository: Repository = Field(description="Repository behind the connection, as owner/name.")
    branch: Branch = "main"
    connection_arn: ConnectionArn | None = Field(
        default=None, description="CodeConnections connection ARN; the CDK context key delivery_connection_arn wins."
    )
    trigger_paths: tuple[str, ...] = Field(
        default=DEFAULT_TRIGGER_PATHS,
        min_length=1,
        max_length=MAX_TRIGGER_PATHS,
        description="Pushes to the branch that touch one of these globs start the pipeline.",
    )
    stages: tuple[str, ...] | None = Field(
        default=None, min_length=1, description="Environments to deploy, in this order (default: all, in file order)."
    )
    prompt_catalog_source: PromptCatalogBucket | None = None
    permissions_boundary_arn: PolicyArn | None = Field(
        default=None, description="Managed policy set as permissions boundary of every role of the delivery stack."
    )

    @field_validator("trigger_paths")
    @classmethod
    def _trigger_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern.strip() or pattern.startswith("/"):
                raise ValueError(f"{pattern!r} is not a repository-relative glob (e.g. configs/**)")
        return value

    def target(self, environment: Environment) -> Environment:
        """The environment as this pipeline deploys it: `account: null` means the tooling account."""
        if environment.account is not None:
            return environment
        return environment.model_copy(update={"account": self.account})


class EnvironmentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environments: list[Environment] = Field(min_length=1)
    delivery: DeliverySettings | None = None

    @field_validator("environments")
    @classmethod
    def _unique(cls, value: list[Environment]) -> list[Environment]:
        names = [env.name for env in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate environment names: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _known_stages(self) -> EnvironmentsFile:
        if self.delivery is not None and self.delivery.stages is not None:
            known = {env.name for env in self.environments}
            unknown = [name for name in self.delivery.stages if name not in known]
            if unknown:
                raise ValueError(
                    f"delivery.stages names unknown environments: {', '.join(unknown)} "
                    f"(expected names from environments: {', '.join(sorted(known))})"
                )
            if len(set(self.delivery.stages)) != len(self.delivery.stages):
                raise ValueError("delivery.stages lists an environment twice")
        return self

    def delivery_environments(self) -> list[Environment]:
        """The environments the delivery pipeline deploys, in deployment order, with their accounts resolved."""
        if self.delivery is None:
            return []
        names = self.delivery.stages if self.delivery.stages is not None else [env.name for env in self.environments]
        return [self.delivery.target(self.get(name)) for name in names]

    def get(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)


def _validation_message(error: Any) -> str:
    context_error = error.get("ctx", {}).get("error")
    return str(context_error) if context_error is not None else str(error["msg"])


def load_environments(path: Path) -> EnvironmentsFile:
    """The environments file, read like a config: every problem with its line and key path."""
    root, data = read_yaml_mapping(path, "settings (environments, delivery)")
    try:
        return EnvironmentsFile.model_validate(data)
    except ValidationError as exc:
        findings = [Finding(tuple(error["loc"]), _validation_message(error)) for error in exc.errors(include_url=False)]
        raise ConfigError(YamlIndex(root).problems(str(path), findings)) from None
