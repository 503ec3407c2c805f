"""The evaluation config: one YAML file, validated into plain pydantic models.

The field names follow the reference AWS sample so existing configs load unchanged; additions
(`model_provider`, `selection`, `pricing`, `pipeline.parallelism`, local providers) have defaults.
Cross-field checks that need the algorithm table live in `validation.py`, so this module stays a
description of the shape.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jmespath
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from step_code.contract.compute import MAX_JUDGE_BATCH_SIZE
from step_code.contract.providers import FINETUNABLE_PROVIDERS, PROVIDERS, ModelProvider, ProviderSpec
from step_code.contract.sharding import AUTO_SHARDS, AUTO_SHARDS_RULE, MAX_SHARDS

PROMPT_PLACEHOLDER = "PROMPT_PLACEHOLDER"
MODEL_INPUT_PLACEHOLDER = "$model_input"
LEGACY_MODEL_INPUT_PLACEHOLDER = "$feature"

# SageMaker: endpoint/endpoint-config/model names and pipeline names.
SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MODEL_PACKAGE_GROUP_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_MODEL_PACKAGE_GROUP_NAME_LENGTH = 63
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+(\.[a-z0-9-]+)+$")
# Our model names become part of step names and S3 keys.
MODEL_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_MODEL_NAME_LENGTH = 40
# SageMaker's upper bound of a training job's KeepAlivePeriodInSeconds (warm pools).
MAX_KEEP_ALIVE_SECONDS = 3600


# strict: a boolean is not a number (lax mode reads `parallelism: true` as 1), nor is text; NaN and infinity
# are not numbers a config can mean (a NaN floor compares false with every score).
STRICT_VALUES = ConfigDict(strict=True, allow_inf_nan=False)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, **STRICT_VALUES)


def _check_jmespath(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"{value!r} is not a valid JMESPath expression ({exc.__class__.__name__})") from None
    return value


def _check_instance_type(value: str) -> str:
    if not INSTANCE_TYPE_RE.match(value):
        raise ValueError(f"{value!r} is not a SageMaker instance type (expected ml.*)")
    return value


def _shard_setting(value: Any) -> Any:
    """One message for a bad shard count (a union would report each member's complaint)."""
    if value == AUTO_SHARDS or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SHARDS):
        return value
    raise ValueError(f"expected a whole number from 1 to {MAX_SHARDS}, or auto ({AUTO_SHARDS_RULE})")


# A shard count, or auto: resolved from the prompt count by the loader (contract/sharding.py states the rule).
ShardSetting = Annotated[int | Literal["auto"], BeforeValidator(_shard_setting)]


class PipelineSettings(StrictModel):
    name: str = Field(description="SageMaker pipeline name (also the prefix of run-scoped names).")
    description: str = ""
    parallelism: int = Field(default=4, ge=1, le=50, description="Max concurrent pipeline steps.")
    processing_instance_type: str = Field(
        default="ml.m5.large", description="Instance of the preprocess, deploy, select, register and cleanup jobs."
    )
    evaluation_instance_type: str = Field(
        default="ml.m5.xlarge", description="Instance of the evaluate jobs (fmeval needs at least 2 vCPUs)."
    )
    shards: ShardSetting = Field(
        default=1,
        description=f"Instances of each model's evaluate job (evaluation_config.shards); auto: {AUTO_SHARDS_RULE}.",
    )
    judge_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_JUDGE_BATCH_SIZE,
        description="Texts per forward pass of a judge model (BERTScore, Detoxify, ToxiGen); default 16 on a CPU "
        "instance, 64 on a GPU; evaluation_config.judge_batch_size overrides it per model.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 82 or not SAGEMAKER_NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid SageMaker pipeline name "
                "(expected letters, digits and single hyphens, at most 82 characters)"
            )
        return value

    @field_validator("processing_instance_type", "evaluation_instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _check_instance_type(value)


class DatasetConfig(StrictModel):
    dataset_name: str
    input_data_location: str = Field(
        description="s3:// URI, or a file in the prompt catalog folder or beside the config."
    )
    dataset_mime_type: Literal["jsonlines", "json"] = "jsonlines"
    model_input_key: str = Field(description="JMESPath of the prompt in each record.")
    target_output_key: str = Field(description="JMESPath of the reference answer in each record.")
    category_key: str | None = Field(default=None, description="JMESPath of a category for per-category scores.")
    # Named as fmeval's DataConfig names them; PromptStereotyping compares the two sentences of each pair.
    sent_more_input_location: str | None = Field(
        default=None, description="JMESPath of the more stereotypical sentence (PromptStereotyping)."
    )
    sent_less_input_location: str | None = Field(
        default=None, description="JMESPath of the less stereotypical sentence (PromptStereotyping)."
    )
    max_quarantine_fraction: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Fail preprocessing when more rows than this are invalid."
    )

    @field_validator("dataset_mime_type", mode="before")
    @classmethod
    def _mime(cls, value: Any) -> Any:
        # fmeval spells these as MIME types; the reference sample used the short form.
        aliases = {"application/jsonlines": "jsonlines", "application/json": "json", "jsonl": "jsonlines"}
        return aliases.get(value, value) if isinstance(value, str) else value

    @field_validator(
        "model_input_key", "target_output_key", "category_key", "sent_more_input_location", "sent_less_input_location"
    )
    @classmethod
    def _jmespath(cls, value: str | None) -> str | None:
        return _check_jmespath(value)

    @field_validator("dataset_name")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", value):
            raise ValueError(f"{value!r} is not a valid dataset name (expected 1-64 of A-Z a-z 0-9 _ . -)")
        return value


class DeploymentConfig(StrictModel):
    instance_type: str
    num_instances: int = Field(default=1, ge=1, le=10)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _check_instance_type(value)


class EvaluationConfig(StrictModel):
    output: str | None = Field(default=None, description="JMESPath of the generated text in the response.")
    content_template: Any = Field(
        default=None,
        description="Request body with PROMPT_PLACEHOLDER where the prompt goes (string, list or object).",
    )
    inference_parameters: dict[str, Any] = Field(default_factory=dict)
    custom_attributes: dict[str, Any] = Field(
        default_factory=dict, description="Sent as the SageMaker CustomAttributes header (k=v;k=v)."
    )
    prompt_template: str = Field(
        default=MODEL_INPUT_PLACEHOLDER, description="fmeval prompt template; `$feature` is the old spelling."
    )
    log_probability: str | None = Field(default=None, description="JMESPath of the log probability.")
    max_concurrency: int = Field(default=8, ge=1, le=256, description="Concurrent requests to the model.")
    timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    max_retries: int = Field(default=5, ge=0, le=20)
    shards: ShardSetting | None = Field(
        default=None,
        description=f"Instances evaluating this model (default: pipeline.shards); auto: {AUTO_SHARDS_RULE}.",
    )
    evaluation_instance_type: str | None = Field(
        default=None,
        description="Instance of this model's evaluate job (default: pipeline.evaluation_instance_type); "
        "a GPU type runs the judge models on the GPU image.",
    )
    judge_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_JUDGE_BATCH_SIZE,
        description="Texts per forward pass of this model's judge models (default: pipeline.judge_batch_size).",
    )

    @field_validator("output", "log_probability")
    @classmethod
    def _jmespath(cls, value: str | None) -> str | None:
        return _check_jmespath(value)

    @field_validator("evaluation_instance_type")
    @classmethod
    def _instance_type(cls, value: str | None) -> str | None:
        return None if value is None else _check_instance_type(value)

    @field_validator("prompt_template")
    @classmethod
    def _prompt_template(cls, value: str) -> str:
        value = value.replace(LEGACY_MODEL_INPUT_PLACEHOLDER, MODEL_INPUT_PLACEHOLDER)
        if MODEL_INPUT_PLACEHOLDER not in value:
            raise ValueError(f"{value!r} has no $model_input placeholder (the old spelling $feature is accepted)")
        return value

    @field_validator("content_template")
    @classmethod
    def _content_template(cls, value: Any) -> Any:
        if value is None:
            return None
        rendered = value if isinstance(value, str) else json.dumps(value)
        if PROMPT_PLACEHOLDER not in rendered:
            raise ValueError(f"content template has no {PROMPT_PLACEHOLDER} where the prompt goes")
        return value

    @field_validator("custom_attributes")
    @classmethod
    def _custom_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        header = custom_attributes_header(value)
        if len(header) > 1024:
            raise ValueError("custom attributes exceed SageMaker's 1024-character CustomAttributes header")
        return value


def custom_attributes_header(attributes: dict[str, Any]) -> str:
    """`{"accept_eula": True}` -> `accept_eula=true`, the form SageMaker JumpStart endpoints expect."""

    def render(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return ";".join(f"{key}={render(val)}" for key, val in attributes.items())


class FinetuningParameters(BaseModel):
    """Training resources plus JumpStart hyperparameters (every other key is passed as a hyperparameter)."""

    model_config = ConfigDict(extra="allow", frozen=True, **STRICT_VALUES)

    instance_type: str
    num_instances: int = Field(default=1, ge=1, le=16)
    max_run_seconds: int = Field(default=86400, ge=600, le=432000)
    keep_alive_period_in_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_KEEP_ALIVE_SECONDS,
        description="SageMaker warm pool: keep the training instances this long after the job for the next "
        "matching one (billed while idle).",
    )

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _check_instance_type(value)

    def hyperparameters(self) -> dict[str, str]:
        """JumpStart takes hyperparameters as strings; booleans in the form its scripts parse."""
        extras = self.model_extra or {}
        out: dict[str, str] = {}
        for key, value in sorted(extras.items()):
            out[key] = ("True" if value else "False") if isinstance(value, bool) else str(value)
        return out


class FinetuningConfig(StrictModel):
    train_data_path: str = Field(description="s3:// URI, or a file or folder inside the prompt catalog.")
    validation_data_path: str | None = None
    parameters: FinetuningParameters

    def training_inputs(self) -> dict[str, Any]:
        """What the trained weights depend on: data, hyperparameters and the training cluster's shape
        (not how long the job may run, nor how long its warm pool stays)."""
        return {
            "train_data_path": self.train_data_path,
            "validation_data_path": self.validation_data_path,
            "hyperparameters": self.parameters.hyperparameters(),
            "instance_type": self.parameters.instance_type,
            "num_instances": self.parameters.num_instances,
        }


class ModelConfig(StrictModel):
    name: str
    model_provider: ModelProvider = "jumpstart"
    model_id: str | None = None
    model_version: str = "*"
    endpoint_name: str | None = None
    endpoint_url: str | None = Field(default=None, description="For http/openai providers.")
    responses_location: str | None = Field(
        default=None, description="For the recorded provider: JSONL of outputs already produced by the model."
    )
    model_package_group_name: str | None = Field(
        default=None, description="Registry group for this model when it wins (default: model_registry's)."
    )
    deployment_config: DeploymentConfig | None = None
    evaluation_config: EvaluationConfig = Field(default_factory=EvaluationConfig)
    finetuning: FinetuningConfig | None = Field(default=None, alias="finetuning_config")
    cleanup_endpoint: bool = True
    keep_for_hours: float | None = Field(
        default=None,
        gt=0,
        le=8760,
        description="With cleanup_endpoint: false, a kept endpoint is deleted by the safety net's hourly sweep "
        "this long after the end of the last pipeline execution that used it (never while one still does).",
    )

    @model_validator(mode="before")
    @classmethod
    def _finetuning_spellings(cls, data: Any) -> Any:
        # The reference sample used both `finetuning` and `finetuning_config`.
        if isinstance(data, dict) and "finetuning" in data:
            if "finetuning_config" in data:
                raise ValueError("give either finetuning or finetuning_config, not both")
            data = {**data, "finetuning_config": data["finetuning"]}
            del data["finetuning"]
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_MODEL_NAME_LENGTH or not MODEL_NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid model name (expected letters, digits and single hyphens, "
                f"at most {MAX_MODEL_NAME_LENGTH} characters)"
            )
        return value

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not SAGEMAKER_NAME_RE.match(value)):
            raise ValueError(
                f"{value!r} is not a valid SageMaker endpoint name "
                "(expected letters, digits and single hyphens, at most 63 characters)"
            )
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (expected http://host[:port]/path or https://...)")
        return value

    @field_validator("model_package_group_name")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_PACKAGE_GROUP_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid model package group name (1-63 letters, digits, hyphens)")
        return value

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelConfig:
        provider, spec = self.model_provider, self.provider
        for requirement in spec.requires:
            value = getattr(self, requirement.field)
            if value is None or value == "":
                raise ValueError(f"{requirement.field}{requirement.hint} is required for model_provider {provider!r}")
        if self.finetuning is not None and not spec.finetunable:
            supported = ", ".join(FINETUNABLE_PROVIDERS)
            raise ValueError(f"finetuning is only supported for {supported} models, not {provider!r}")
        if spec.deploys is None and self.deployment_config is not None:
            raise ValueError(f"deployment_config has no effect for model_provider {provider!r}; remove it")
        if spec.output_required and self.evaluation_config.output is None:
            raise ValueError(f"evaluation_config.output (JMESPath of the generated text) is required for {provider!r}")
        if self.keep_for_hours is not None and (self.cleanup_endpoint or spec.deploys is None):
            raise ValueError("keep_for_hours applies only to a deployed model with cleanup_endpoint: false")
        return self

    @property
    def provider(self) -> ProviderSpec:
        return PROVIDERS[self.model_provider]

    def shard_count(self, pipeline: PipelineSettings) -> int:
        shards = self.evaluation_config.shards or pipeline.shards
        if shards == AUTO_SHARDS:
            # The loader resolves auto from the catalog before anything plans, renders or runs.
            raise ValueError(f"shards: auto of model {self.name!r} was not resolved from the prompt count")
        return int(shards)

    def evaluation_instance_type(self, pipeline: PipelineSettings) -> str:
        return self.evaluation_config.evaluation_instance_type or pipeline.evaluation_instance_type

    def judge_batch_size(self, pipeline: PipelineSettings) -> int | None:
        """The configured batch size; None leaves it to the device's default (`DEFAULT_JUDGE_BATCH_SIZES`)."""
        return self.evaluation_config.judge_batch_size or pipeline.judge_batch_size

    @property
    def deploys_endpoint(self) -> bool:
        return self.provider.deploys is not None

    @property
    def identity(self) -> str:
        """What makes two models' responses interchangeable, as far as the config alone tells.

        Keys the response cache together with what the run resolves (`step_code/answering_identity.py`:
        the resolved version, the image and weights deployed, a fine-tune's data digest and artifact).
        A fine-tuned model is known here by its base, its data locations and every fine-tuning parameter,
        so a changed hyperparameter or data path is a different model.
        """
        parts = [self.model_provider, self.model_id or "", self.model_version]
        if self.finetuning is not None:
            parts.append("finetuned:" + canonical_digest(self.finetuning.training_inputs()))
        parts.append((self.endpoint_name or "") if self.provider.existing_endpoint else "")
        parts.append(self.endpoint_url or "")
        parts.append(self.responses_location or "")
        return "|".join(parts)


def canonical_digest(value: Any) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no spaces): equal data, equal digest."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ModelRegistryConfig(StrictModel):
    model_package_group_name: str
    model_package_group_description: str = ""

    @classmethod
    def default_for(cls, pipeline_name: str) -> ModelRegistryConfig:
        """The group of a config without `model_registry` (the reference sample makes the section optional)."""
        name = pipeline_name
        if len(name) > MAX_MODEL_PACKAGE_GROUP_NAME_LENGTH:
            # Cut and hashed like run-scoped names, so two long pipeline names sharing a beginning stay distinct.
            digest = hashlib.sha256(name.encode()).hexdigest()[:5]
            name = f"{name[: MAX_MODEL_PACKAGE_GROUP_NAME_LENGTH - 6].rstrip('-')}-{digest}"
        return cls(
            model_package_group_name=name,
            model_package_group_description=f"Evaluation winners of pipeline {pipeline_name}",
        )

    @field_validator("model_package_group_name")
    @classmethod
    def _group(cls, value: str) -> str:
        if not MODEL_PACKAGE_GROUP_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid model package group name (1-63 letters, digits, hyphens)")
        return value


class AlgorithmConfig(BaseModel):
    """One fmeval algorithm. Keys beyond algorithm/module/config are fields of the fmeval config class."""

    model_config = ConfigDict(extra="allow", frozen=True, **STRICT_VALUES)

    algorithm: str
    module: str | None = None
    config: str | None = None

    def config_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SelectionPolicy(StrictModel):
    primary_metric: str | None = Field(
        default=None, description="Score name, e.g. exact_inclusion (default: the first algorithm's first score)."
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Weighted score over metrics (default: the primary metric alone)."
    )
    min_primary_score: float | None = None
    max_p95_latency_ms: float | None = Field(default=None, gt=0)
    max_cost_per_1k_prompts_usd: float | None = Field(default=None, gt=0)
    max_failed_fraction: float = Field(default=0.05, ge=0, le=1)
    tie_break: Literal["lower_cost", "lower_latency", "name"] = "lower_cost"
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Confidence of the paired tests and of the regression gate."
    )
    require_significance: bool = Field(
        default=False,
        description="The winner must beat the runner-up by a significant paired difference; else tie_break decides.",
    )
    baseline: Literal["approved", "none"] = Field(
        default="approved",
        description="approved: the latest Approved package of the winner's group is the champion it is gated against.",
    )
    max_regression: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="How much worse than the champion the winner may be on the primary metric, at `confidence`.",
    )


class PricingConfig(StrictModel):
    instance_usd_per_hour: dict[str, float] = Field(
        default_factory=dict, description="Overrides of the shipped on-demand price table."
    )
    bedrock_usd_per_1k_tokens: dict[str, dict[Literal["input", "output"], float]] = Field(default_factory=dict)


def _default_registry(validated: dict[str, Any]) -> ModelRegistryConfig:
    pipeline = validated.get("pipeline")
    # Without a valid pipeline section validation fails anyway; any valid group keeps the error list to that one.
    return ModelRegistryConfig.default_for(pipeline.name if isinstance(pipeline, PipelineSettings) else "evalops")


class Config(StrictModel):
    pipeline: PipelineSettings
    dataset: DatasetConfig
    models: list[ModelConfig] = Field(min_length=1)
    model_registry: ModelRegistryConfig = Field(default_factory=_default_registry)
    algorithms: list[AlgorithmConfig] = Field(min_length=1)
    selection: SelectionPolicy = Field(default_factory=SelectionPolicy)
    pricing: PricingConfig = Field(default_factory=PricingConfig)

    @model_validator(mode="after")
    def _unique_model_names(self) -> Config:
        seen: dict[str, int] = {}
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(
                    f"models[{index}].name: duplicate model name {model.name!r} (also models[{seen[model.name]}])"
                )
            seen[model.name] = index
        return self

    @property
    def registry_is_default(self) -> bool:
        """True when the config has no `model_registry` and the group is named after the pipeline."""
        return "model_registry" not in self.model_fields_set

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def model_package_groups(self) -> dict[str, str]:
        """Every group a winner can be registered in, name -> description, in config order."""
        groups = {self.model_registry.model_package_group_name: self.model_registry.model_package_group_description}
        for model in self.models:
            if model.model_package_group_name and model.model_package_group_name not in groups:
                groups[model.model_package_group_name] = f"{self.pipeline.name}: {model.name}"
        return groups
