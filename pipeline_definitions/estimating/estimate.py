"""What a run will cost: instance-hours per model and per processing job, priced from `pricing.py`.

An estimate, not a bill: the durations are the assumptions listed in `ASSUMPTIONS` (printed with every
estimate), prices are on-demand list prices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline_definitions.loading.loader import LoadedConfig
from pipeline_definitions.planning.plan import PlannedStep, build_plan
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from pipeline_definitions.planning.warm_pools import warm_pools
from step_code.contract.algorithms import lookup
from step_code.contract.config import AlgorithmConfig, Config, ModelConfig
from step_code.contract.job_env import JobGuardrails
from step_code.contract.locations import is_s3
from step_code.contract.pricing import PRICE_TABLE_AS_OF, Usage, bedrock_usd_per_1k_tokens, instance_usd_per_hour
from step_code.resource_guardrails import warm_pool_keep_alive

DEPLOY_MINUTES = 12.0
SECONDS_PER_CALL = 1.5
FMEVAL_FIXED_MINUTES = 1.0
TRAINING_HOURS_PER_EPOCH = 1.0
TRAINING_STARTUP_MINUTES = 10.0
# Processing jobs other than evaluate and the ones that wait for an endpoint or a training job.
STEP_MINUTES = {
    kind: spec.estimated_minutes for kind, spec in STEP_KINDS.items() if isinstance(spec.estimated_minutes, float)
}
BEDROCK_INPUT_TOKENS = 200
DEFAULT_OUTPUT_TOKENS = 256
OUTPUT_TOKEN_PARAMETERS = ("max_new_tokens", "max_tokens", "maxTokens", "maxTokenCount", "max_gen_len")
PER_PROMPTS_DEFAULT = 1000
# PromptStereotyping asks the model for the log probability of both sentences of each pair.
SENTENCE_PAIR_PROMPTS = 2

ASSUMPTIONS = (
    f"an endpoint takes {DEPLOY_MINUTES:g} min from creation to InService and is billed from creation until "
    "its clean-up step deletes it",
    f"each model call takes {SECONDS_PER_CALL:g} s; calls run evaluation_config.max_concurrency at a time "
    "on each of the model's shards",
    "each record's prompt is sent once whatever the algorithms, plus, per record, num_perturbations perturbed "
    f"prompts per semantic-robustness algorithm and {SENTENCE_PAIR_PROMPTS} sentence prompts for PromptStereotyping "
    "(an upper bound: a prompt that repeats is sent once)",
    f"fmeval adds {FMEVAL_FIXED_MINUTES:g} min per evaluation (start-up and scoring)",
    f"fine-tuning trains {TRAINING_HOURS_PER_EPOCH:g} h per epoch (hyperparameter `epoch`, default 1) plus "
    f"{TRAINING_STARTUP_MINUTES:g} min start-up",
    "processing jobs: "
    + ", ".join(f"{kind} {minutes:g} min" for kind, minutes in STEP_MINUTES.items())
    + "; deploy and finetune jobs wait for their endpoint or training job; evaluate jobs last the evaluation",
    f"Bedrock: {BEDROCK_INPUT_TOKENS} input tokens per call and the inference parameters' output-token limit "
    f"(default {DEFAULT_OUTPUT_TOKENS}) as output",
    "existing endpoints, http/openai servers and recorded responses cost nothing here",
    "a warm pool (keep_alive_period_in_seconds) is billed idle for its whole keep-alive after the last "
    "fine-tuning that uses it; the fine-tunings before it hand it on at once; a fine-tuning that sets no "
    "keep-alive gets the environment's warm_pool_keep_alive_seconds (plan --env), billed idle after its own job",
)


@dataclass(frozen=True)
class ModelEstimate:
    model: str
    provider: str
    model_calls: int
    evaluation_minutes: float
    instance_type: str | None = None
    instance_count: int = 0
    deploy_minutes: float = 0.0
    endpoint_instance_hours: float = 0.0
    endpoint_usd: float | None = None
    # Deployed endpoints kept after the run (cleanup_endpoint: false) go on costing this much per hour.
    kept_endpoint_usd_per_hour: float | None = None
    training_instance_type: str | None = None
    training_hours: float = 0.0
    training_instance_hours: float = 0.0
    training_usd: float | None = None
    # Instance-hours of the warm pool left idle after this model's fine-tuning (the last one of its pool, or a
    # job kept warm by the environment's default).
    warm_pool_idle_instance_hours: float = 0.0
    token_usd: float | None = None
    # False when a price this model needs is missing (named in the run's warnings).
    priced: bool = True

    @property
    def instance_hours(self) -> float:
        return self.endpoint_instance_hours + self.training_instance_hours

    @property
    def usd(self) -> float:
        return sum(value for value in (self.endpoint_usd, self.training_usd, self.token_usd) if value is not None)


@dataclass(frozen=True)
class StepEstimate:
    step: str
    instance_type: str
    minutes: float
    usd: float | None

    @property
    def instance_hours(self) -> float:
        return self.minutes / 60


@dataclass(frozen=True)
class RunEstimate:
    prompt_count: int | None
    prompts: int
    models: tuple[ModelEstimate, ...]
    steps: tuple[StepEstimate, ...]
    warnings: tuple[str, ...]
    assumptions: tuple[str, ...] = ASSUMPTIONS
    price_table_as_of: str = PRICE_TABLE_AS_OF

    @property
    def processing_instance_hours(self) -> float:
        return sum(step.instance_hours for step in self.steps)

    @property
    def processing_usd(self) -> float:
        return sum(step.usd for step in self.steps if step.usd is not None)

    @property
    def instance_hours(self) -> float:
        return self.processing_instance_hours + sum(model.instance_hours for model in self.models)

    @property
    def total_usd(self) -> float:
        """Everything that has a price; `warnings` names what has none."""
        return self.processing_usd + sum(model.usd for model in self.models)


def count_prompts(loaded: LoadedConfig) -> int | None:
    """Records in a local dataset (non-empty lines of JSON Lines, items of a JSON array); None for S3."""
    if is_s3(loaded.dataset_location):
        return None
    path = Path(loaded.dataset_location)
    dataset = loaded.config.dataset
    if dataset.dataset_mime_type == "jsonlines":
        with path.open(encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    # A JSON dataset is one array of records (what preprocess reads).
    return len(document) if isinstance(document, list) else None


def warm_pool_idle_seconds(config: Config, guardrails: JobGuardrails) -> dict[str, int]:
    """Model name -> seconds its training job's warm pool stays idle after it, with the keep-alive the job
    requests (`warm_pool_keep_alive`: the fine-tuning's own, else the environment's default)."""
    idle: dict[str, int] = {}
    for pool in warm_pools(config):
        # The jobs before the last hand the pool on at once; only the last one's keep-alive is idle.
        idle.update({name: 0 for name in pool.models})
        idle[pool.models[-1]] = pool.keep_alive_seconds
    for model in config.models:
        if model.finetuning is not None and model.name not in idle:
            configured = model.finetuning.parameters.keep_alive_period_in_seconds
            idle[model.name] = warm_pool_keep_alive(guardrails, configured) or 0
    return idle


def estimate_run(
    loaded: LoadedConfig, prompt_count: int | None, guardrails: JobGuardrails | None = None
) -> RunEstimate:
    """Instance-hours and USD of one run over `prompt_count` prompts (per 1,000 prompts when None), in the
    environment whose `guardrails` are given (`plan --env`; none: an environment without a warm-pool default)."""
    config = loaded.config
    prompts = prompt_count if prompt_count is not None else PER_PROMPTS_DEFAULT
    warnings: list[str] = []
    idle_after = warm_pool_idle_seconds(config, guardrails or JobGuardrails())
    models = tuple(
        model_estimate(config, model, prompts, warnings, idle_after.get(model.name, 0)) for model in config.models
    )
    by_model = {estimate.model: estimate for estimate in models}
    steps = tuple(_step_estimate(config, step, by_model, warnings) for step in build_plan(config).processing_steps)
    return RunEstimate(
        prompt_count=prompt_count,
        prompts=prompts,
        models=models,
        steps=steps,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _price(instance_type: str, config: Config, usage: Usage, warnings: list[str]) -> float | None:
    price = instance_usd_per_hour(instance_type, config, usage)
    if price is None:
        warnings.append(
            f"no {usage} price for {instance_type} in the price table; set pricing.instance_usd_per_hour"
            f".{instance_type} to include it"
        )
    return price


def extra_prompts_per_record(algorithm: AlgorithmConfig) -> int:
    """Prompts an algorithm asks the model for besides each record's own (the evaluate step's plan)."""
    spec = lookup(algorithm.algorithm)
    if spec.invokes_model:
        return int(spec.field_value(algorithm.config_fields(), "num_perturbations"))
    return SENTENCE_PAIR_PROMPTS if spec.needs_sentence_pairs else 0


def calls_per_record(config: Config) -> int:
    """At most this many calls per record: its own prompt (sent once, whatever the number of algorithms
    scoring its answer) plus what the robustness and stereotyping algorithms ask for."""
    return 1 + sum(extra_prompts_per_record(algorithm) for algorithm in config.algorithms)


def model_estimate(
    config: Config, model: ModelConfig, prompts: int, warnings: list[str], pool_idle_seconds: int = 0
) -> ModelEstimate:
    calls = prompts * calls_per_record(config) if model.provider.calls_model else 0
    # A sharded model's instances each send max_concurrency requests at once.
    concurrency = model.evaluation_config.max_concurrency * model.shard_count(config.pipeline)
    evaluation_minutes = calls * SECONDS_PER_CALL / concurrency / 60
    evaluation_minutes += FMEVAL_FIXED_MINUTES
    estimate = ModelEstimate(
        model=model.name, provider=model.model_provider, model_calls=calls, evaluation_minutes=evaluation_minutes
    )
    if model.finetuning is not None:
        parameters = model.finetuning.parameters
        hours = _epochs(parameters.model_extra or {}) * TRAINING_HOURS_PER_EPOCH + TRAINING_STARTUP_MINUTES / 60
        price = _price(parameters.instance_type, config, "training", warnings)
        idle_instance_hours = pool_idle_seconds / 3600 * parameters.num_instances
        instance_hours = hours * parameters.num_instances + idle_instance_hours
        estimate = replace(
            estimate,
            training_instance_type=parameters.instance_type,
            training_hours=hours,
            training_instance_hours=instance_hours,
            warm_pool_idle_instance_hours=idle_instance_hours,
            training_usd=None if price is None else price * instance_hours,
            priced=estimate.priced and price is not None,
        )
    if model.deploys_endpoint and model.deployment_config is not None:
        deployment = model.deployment_config
        price = _price(deployment.instance_type, config, "inference", warnings)
        instance_hours = deployment.num_instances * (DEPLOY_MINUTES + evaluation_minutes) / 60
        estimate = replace(
            estimate,
            instance_type=deployment.instance_type,
            instance_count=deployment.num_instances,
            deploy_minutes=DEPLOY_MINUTES,
            endpoint_instance_hours=instance_hours,
            endpoint_usd=None if price is None else price * instance_hours,
            kept_endpoint_usd_per_hour=(
                price * deployment.num_instances if price is not None and not model.cleanup_endpoint else None
            ),
            priced=estimate.priced and price is not None,
        )
    if model.provider.pricing == "bedrock-tokens" and model.model_id is not None:
        token_prices = bedrock_usd_per_1k_tokens(model.model_id, config)
        if token_prices is None:
            warnings.append(
                f"no Bedrock price for {model.model_id}; set pricing.bedrock_usd_per_1k_tokens.{model.model_id}"
            )
            estimate = replace(estimate, priced=False)
        else:
            per_call = (
                BEDROCK_INPUT_TOKENS * token_prices["input"] + _output_token_limit(model) * token_prices["output"]
            )
            estimate = replace(estimate, token_usd=calls * per_call / 1000)
    return estimate


def _epochs(hyperparameters: dict[str, Any]) -> float:
    value = hyperparameters.get("epoch", 1)
    try:
        epochs = float(value)
    except (TypeError, ValueError):
        return 1.0
    return epochs if epochs > 0 else 1.0


def _output_token_limit(model: ModelConfig) -> int:
    parameters = model.evaluation_config.inference_parameters
    for name in OUTPUT_TOKEN_PARAMETERS:
        value = parameters.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_OUTPUT_TOKENS


def _step_minutes(step: PlannedStep, by_model: dict[str, ModelEstimate]) -> float:
    minutes = STEP_KINDS[step.kind].estimated_minutes
    if isinstance(minutes, float):
        return minutes
    model = by_model.get(step.model or "")
    if model is None:
        raise ValueError(f"step {step.name}: a {step.kind} step is estimated from its model, and it names none")
    return minutes(model)


def _step_estimate(
    config: Config, step: PlannedStep, by_model: dict[str, ModelEstimate], warnings: list[str]
) -> StepEstimate:
    minutes = _step_minutes(step, by_model)
    price = _price(step.instance_type, config, "processing", warnings)
    # A job of several instances (a sharded evaluate) is billed for each; `minutes` is its instance-minutes.
    return StepEstimate(
        step=step.name,
        instance_type=step.instance_type,
        minutes=minutes * step.instance_count,
        usd=None if price is None else price * minutes * step.instance_count / 60,
    )
