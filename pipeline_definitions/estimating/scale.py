"""The run at scale: per model, how a catalog of 100k or 1M prompts spreads over evaluate instances and
endpoint instances, how long it takes and what it costs. Every figure follows from `SCALE_ASSUMPTIONS`.

- calls = prompts x calls per record (`estimate.calls_per_record`);
- the endpoint sees shards x max_concurrency requests at once; an endpoint instance is assumed to serve
  `ENDPOINT_INSTANCE_CONCURRENCY` of them without queueing, so concurrency beyond instances x that is
  queued and buys nothing (and `concurrency_warnings` says so);
- invocation wall = calls x `SECONDS_PER_CALL` / effective concurrency; each shard also scores its
  records (`SCORING_RECORDS_PER_SECOND`), runs the judge models on them (`JUDGE_TEXTS_PER_SECOND_CPU`,
  `judge_texts_per_record`) and starts a job (`JOB_START_MINUTES`); the merge adds its job;
- cost = endpoint instances x (deploy + wall) + evaluate instances x wall + merge job, at the price table,
  plus the per-token charges of the run estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_definitions.estimating.estimate import DEPLOY_MINUTES, SECONDS_PER_CALL, calls_per_record, model_estimate
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from step_code.contract.algorithms import lookup
from step_code.contract.compute import is_gpu_instance
from step_code.contract.config import AlgorithmConfig, Config, ModelConfig
from step_code.contract.pricing import instance_usd_per_hour

SCALE_PROMPTS = (100_000, 1_000_000)
# Requests one endpoint instance is assumed to serve at once; more are queued by the model server.
ENDPOINT_INSTANCE_CONCURRENCY = 32
# Records one evaluate instance invokes and scores per second of CPU (client and lexical scoring): measured
# 1.13 CPU-ms per record by `python -m benchmarks --only shards` (100k prompts, 2026-12-04).
SCORING_RECORDS_PER_SECOND = 850.0
# Texts one CPU evaluate instance runs through a judge model per second (BERTScore: reference-output pairs),
# batched at the best size measured by `python -m benchmarks --only judges` (2026-12-05, 2 cores, stand-ins of
# the real architectures and sizes). No GPU rate: none was measured.
JUDGE_TEXTS_PER_SECOND_CPU = {"bertscore": 0.53, "detoxify": 5.74, "toxigen": 1.77}
JOB_START_MINUTES = 4.0
MERGE_MINUTES = float(STEP_KINDS["merge"].estimated_minutes)  # type: ignore[arg-type]

SCALE_ASSUMPTIONS = (
    f"each model call takes {SECONDS_PER_CALL:g} s; an endpoint instance serves {ENDPOINT_INSTANCE_CONCURRENCY} "
    "requests at once, more are queued",
    f"each evaluate instance spends 1 s of CPU per {SCORING_RECORDS_PER_SECOND:,.0f} records (client and lexical "
    "scoring, measured), after its calls",
    "on a CPU evaluate instance each judge model runs "
    + ", ".join(f"{judge} {rate:g}" for judge, rate in JUDGE_TEXTS_PER_SECOND_CPU.items())
    + " texts/s (measured, batched; BERTScore counts one reference per record); on a GPU instance judge time "
    "is not included (not measured)",
    f"every processing job takes {JOB_START_MINUTES:g} min to start; the merge job {MERGE_MINUTES:g} min",
    f"an endpoint is billed from creation ({DEPLOY_MINUTES:g} min before InService) until its evaluation ends",
)


@dataclass(frozen=True)
class ScaleRow:
    model: str
    prompts: int
    shards: int
    evaluate_instance_type: str
    calls: int
    requests_in_flight: int
    endpoint: str | None
    endpoint_instances: int
    calls_per_endpoint_instance: int | None
    wall_minutes: float
    # The evaluate job alone: SageMaker stops a processing job at its MaxRuntimeInSeconds.
    evaluate_minutes: float
    usd: float | None

    @property
    def over_runtime_limit(self) -> bool:
        limit = STEP_KINDS["evaluate_shards" if self.shards > 1 else "evaluate"].max_runtime_seconds
        return limit is not None and self.evaluate_minutes * 60 > limit


def _capacity(model: ModelConfig) -> int | None:
    """Requests the model's endpoint serves at once, None when it has no endpoint this run sizes."""
    if model.deploys_endpoint and model.deployment_config is not None:
        return model.deployment_config.num_instances * ENDPOINT_INSTANCE_CONCURRENCY
    return None


def concurrency_warnings(config: Config) -> list[str]:
    """Models whose shards send more requests at once than their endpoint's instances are sized for."""
    warnings = []
    for model in config.models:
        capacity = _capacity(model)
        shards = model.shard_count(config.pipeline)
        in_flight = shards * model.evaluation_config.max_concurrency
        if capacity is not None and in_flight > capacity and model.deployment_config is not None:
            warnings.append(
                f"{model.name}: {shards} shard(s) x max_concurrency {model.evaluation_config.max_concurrency} = "
                f"{in_flight} requests at once, more than {model.deployment_config.num_instances} endpoint "
                f"instance(s) x {ENDPOINT_INSTANCE_CONCURRENCY} = {capacity}; raise deployment_config.num_instances "
                "or lower shards/max_concurrency (the excess waits in the endpoint's queue)"
            )
    return warnings


def judge_texts_per_record(algorithm: AlgorithmConfig) -> dict[str, int]:
    """What one record puts through each judge model: BERTScore compares the output with the reference
    (algorithms with a target) and each perturbed output with the reference, or with the original output
    (GeneralSemanticRobustness); a toxicity detector reads the output."""
    spec = lookup(algorithm.algorithm)
    fields = algorithm.config_fields()
    texts: dict[str, int] = {}
    if "bertscore" in spec.downloads:
        perturbed = int(spec.field_value(fields, "num_perturbations")) if spec.invokes_model else 0
        texts["bertscore"] = int(spec.needs_target_output) + perturbed
    if "toxicity-model" in spec.downloads:
        texts[str(spec.field_value(fields, "model_type"))] = 1
    return texts


def judge_seconds_per_record(config: Config) -> float:
    """CPU seconds the judge models spend on one record, over every configured algorithm."""
    return sum(
        count / JUDGE_TEXTS_PER_SECOND_CPU[judge]
        for algorithm in config.algorithms
        for judge, count in judge_texts_per_record(algorithm).items()
    )


def scale_row(config: Config, model: ModelConfig, prompts: int) -> ScaleRow:
    shards = model.shard_count(config.pipeline)
    calls = prompts * calls_per_record(config) if model.provider.calls_model else 0
    in_flight = shards * model.evaluation_config.max_concurrency
    capacity = _capacity(model)
    effective = min(in_flight, capacity) if capacity is not None else in_flight
    invoke_minutes = calls * SECONDS_PER_CALL / effective / 60
    evaluate_type = model.evaluation_instance_type(config.pipeline)
    scoring_minutes = prompts / shards / SCORING_RECORDS_PER_SECOND / 60
    if not is_gpu_instance(evaluate_type):
        scoring_minutes += prompts / shards * judge_seconds_per_record(config) / 60
    evaluate_minutes = JOB_START_MINUTES + invoke_minutes + scoring_minutes
    wall = evaluate_minutes + (JOB_START_MINUTES + MERGE_MINUTES if shards > 1 else 0.0)
    prices = [instance_usd_per_hour(evaluate_type, config, "processing")]
    usd_parts = [prices[0] * shards * evaluate_minutes / 60 if prices[0] is not None else None]
    if shards > 1:
        merge_price = instance_usd_per_hour(config.pipeline.processing_instance_type, config, "processing")
        usd_parts.append(merge_price * MERGE_MINUTES / 60 if merge_price is not None else None)
    endpoint = None
    instances = 0
    if model.deploys_endpoint and model.deployment_config is not None:
        deployment = model.deployment_config
        endpoint, instances = deployment.instance_type, deployment.num_instances
        price = instance_usd_per_hour(deployment.instance_type, config, "inference")
        usd_parts.append(price * instances * (DEPLOY_MINUTES + evaluate_minutes) / 60 if price is not None else None)
    # Per-token charges (Bedrock) as the run estimate prices them.
    usd_parts.append(model_estimate(config, model, prompts, []).token_usd or 0.0)
    usd = None if any(part is None for part in usd_parts) else sum(part for part in usd_parts if part is not None)
    return ScaleRow(
        model=model.name,
        prompts=prompts,
        shards=shards,
        evaluate_instance_type=evaluate_type,
        calls=calls,
        requests_in_flight=in_flight,
        endpoint=endpoint,
        endpoint_instances=instances,
        calls_per_endpoint_instance=calls // instances if instances else None,
        wall_minutes=wall,
        evaluate_minutes=evaluate_minutes,
        usd=usd,
    )


def scale_rows(config: Config, prompt_counts: tuple[int, ...] = SCALE_PROMPTS) -> list[ScaleRow]:
    return [scale_row(config, model, prompts) for prompts in prompt_counts for model in config.models]
