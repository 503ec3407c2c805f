"""What the steps write: manifest.json, deployment.json, summary.json, the worst records, decision.json, ...

Plain pydantic models so the step code, the local runner and the report read one shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelArtifact(_Result):
    """What gets registered if this model wins."""

    provider: str
    model_id: str | None = None
    model_version: str | None = None
    image_uri: str | None = None
    model_data_url: str | None = None
    endpoint_name: str | None = None
    training_job_name: str | None = None
    finetuned: bool = False
    environment: dict[str, str] = Field(
        default_factory=dict, description="Container environment the model was deployed with; registered with it."
    )
    training_data_sha256: str | None = Field(
        default=None, description="Digest of the fine-tuning data the weights were trained on (finetune.json's)."
    )


class Deployment(_Result):
    """deployment.json, written by the deploy step."""

    model: str
    endpoint_name: str
    endpoint_config_name: str | None = None
    model_name: str | None = None
    created: bool = Field(description="False when an InService endpoint of that name was reused.")
    instance_type: str | None = None
    instance_count: int = 1
    artifact: ModelArtifact
    kept: bool = Field(default=False, description="A kept endpoint (cleanup_endpoint: false), named by its identity.")
    superseded: list[str] = Field(
        default_factory=list, description="This model's kept endpoints of another deployment identity."
    )
    expired_deleted: list[str] = Field(
        default_factory=list,
        description="Superseded kept endpoints no run holds, deleted as keep_for_hours passed since their last use.",
    )


class FinetuneResult(_Result):
    """finetune.json, written by the finetune step."""

    model: str
    training_job_name: str
    model_data_url: str
    base_model_id: str
    base_model_version: str
    hyperparameters: dict[str, str]
    training_data_sha256: str | None = Field(
        default=None, description="Digest of the training channels' objects (keys, sizes, ETags) when listed."
    )


class LatencyStats(_Result):
    p50_ms: float | None = None
    p95_ms: float | None = None
    mean_ms: float | None = None


class TokenStats(_Result):
    input_total: int = 0
    output_total: int = 0
    input_mean: float | None = None
    output_mean: float | None = None


class CostEstimate(_Result):
    basis: str = Field(description="instance-hours, per-token, or none (recorded/local models)")
    usd_per_hour: float | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    cost_per_1k_prompts_usd: float | None = None


class MetricInterval(_Result):
    """A score's confidence interval over the records it is the mean of (step_code/uncertainty.py)."""

    value: float | None
    low: float | None
    high: float | None
    n: int = Field(description="Records the interval rests on.")
    method: Literal["clopper-pearson", "bootstrap", "none"]
    confidence: float
    small_sample: bool = Field(default=False, description="Fewer records than uncertainty.SMALL_SAMPLE.")


class PairedComparison(_Result):
    """`first` against `second` on the records both scored: difference = first - second (not oriented)."""

    metric: str
    first: str
    second: str
    n: int
    difference: float | None
    low: float | None
    high: float | None
    test: Literal["mcnemar-exact", "paired-permutation", "paired-t", "none"]
    p_value: float | None
    significant: bool
    confidence: float
    higher_is_better: bool
    small_sample: bool = False


class AlgorithmResult(_Result):
    algorithm: str
    eval_name: str
    scores: dict[str, float | None]
    category_scores: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    output_path: str = Field(description="EvalOutput JSON, relative to the evaluation output dir.")
    report_path: str = Field(description="HTML report, relative to the evaluation output dir.")
    records_path: str | None = None
    record_scores_path: str | None = Field(
        default=None, description="Per-record scores keyed by record_id (files.RECORD_SCORES_SUFFIX)."
    )
    intervals: dict[str, MetricInterval] = Field(
        default_factory=dict, description="Score name -> interval, for scores that are means of record scores."
    )
    error: str | None = None


def metric_names(results: Sequence[AlgorithmResult]) -> dict[tuple[str, str], str]:
    """(eval_name, score) -> the score's name in summary.metrics: `<eval_name>.<score>` when two algorithms
    share the score's name."""
    owners = Counter(name for result in results for name in result.scores)
    return {
        (result.eval_name, name): name if owners[name] == 1 else f"{result.eval_name}.{name}"
        for result in results
        for name in result.scores
    }


class EvaluationSummary(_Result):
    """summary.json, written once per model by the evaluate step."""

    model: str
    provider: str
    model_identity: str
    dataset_sha256: str
    records_total: int
    records_succeeded: int
    records_failed: int
    model_calls: int = Field(description="Requests sent to the model in this run, retries included.")
    cache_hits: int
    latency: LatencyStats
    tokens: TokenStats
    throughput_per_second: float | None = None
    metrics: dict[str, float | None] = Field(description="Score name -> dataset-level value.")
    intervals: dict[str, MetricInterval] = Field(
        default_factory=dict, description="Score name (as in metrics) -> confidence interval and record count."
    )
    algorithms: list[AlgorithmResult]
    cost: CostEstimate
    artifact: ModelArtifact
    execution_id: str


class CandidateVerdict(_Result):
    model: str
    weighted_score: float | None
    metrics: dict[str, float | None]
    p95_latency_ms: float | None
    cost_per_1k_prompts_usd: float | None
    failed_fraction: float
    eligible: bool
    reasons: list[str] = Field(description="Why it was excluded, or why it won/lost.")
    rank: int | None = None
    intervals: dict[str, MetricInterval] = Field(default_factory=dict)
    weighted_interval: MetricInterval | None = Field(
        default=None, description="Interval of the weighted score over the records every weighted metric scored."
    )
    champion: bool = Field(default=False, description="The approved package of the registry, as a candidate.")


class FlippedRecord(_Result):
    """A record the challenger and the champion score differently on the primary metric."""

    record_id: str
    prompt: str | None = None
    reference: str | None = None
    champion_output: str | None = None
    challenger_output: str | None = None
    champion_score: float
    challenger_score: float


class ChampionComparison(_Result):
    """The winner against the latest Approved package of its model package group (selection.baseline)."""

    status: Literal["compared", "no-approved-package", "unanswerable"]
    detail: str = Field(description="What was compared, or why the champion could not be.")
    model_package_arn: str | None = None
    model_package_version: int | None = None
    champion: str | None = Field(default=None, description="The champion's model name, as a candidate.")
    challenger: str | None = None
    comparison: PairedComparison | None = Field(
        default=None, description="challenger - champion on the primary metric, on the shared records."
    )
    max_regression: float | None = None
    passed: bool = True
    worse: int = 0
    better: int = 0
    worst_worse: list[FlippedRecord] = Field(default_factory=list)
    worst_better: list[FlippedRecord] = Field(default_factory=list)


# How semantic-robustness perturbations are drawn (`step_code.perturbation_seeds`); stored outputs scored one
# way cannot stand in for a run scored the other.
PerturbationSeeding = Literal["dataset-order", "per-record"]
PERTURBATION_SEEDING: PerturbationSeeding = "per-record"


class EvaluatedAs(_Result):
    """What a registered winner was evaluated as, stored beside its summary.json: whether its stored outputs
    fit a later run (catalog, prompt template, algorithms) and how to ask it again when they do not."""

    model: dict[str, Any] = Field(description="The winner's models[] entry, as the run's config.json holds it.")
    algorithms: list[dict[str, Any]] = Field(description="The run's algorithms[] entries.")
    dataset_sha256: str
    # Files written before perturbations were seeded per record lack the field: theirs were drawn in dataset order.
    perturbations: PerturbationSeeding = Field(
        default="dataset-order", description="How the robustness algorithms' perturbations were drawn."
    )


ChampionAnswerStatus = Literal["no-approved-package", "stored", "endpoint", "redeployed", "unanswerable"]


class ChampionAnswer(_Result):
    """How the approved champion of one model package group was answered on this run's catalog."""

    group: str
    status: ChampionAnswerStatus
    detail: str
    model_package_arn: str | None = None
    model_package_version: int | None = None
    statistics_uri: str | None = Field(default=None, description="The package's ModelQuality statistics.")
    evaluation_path: str | None = Field(
        default=None, description="Its evaluation output, relative to the champion output dir (when answered)."
    )


class ChampionAnswers(_Result):
    """champion.json, written by the champion step; the select step gates the winner with its group's answer."""

    answers: list[ChampionAnswer]

    def of(self, group: str) -> ChampionAnswer | None:
        return next((answer for answer in self.answers if answer.group == group), None)


class Decision(_Result):
    """decision.json, written by the select step; the condition step reads meets_policy and reason."""

    meets_policy: bool
    winner: str | None
    reason: str
    primary_metric: str
    weights: dict[str, float]
    candidates: list[CandidateVerdict]
    policy: dict[str, Any]
    comparisons: list[PairedComparison] = Field(
        default_factory=list, description="Each eligible candidate against the next one, on the weighted score."
    )
    champion: ChampionComparison | None = None


class WorstRecord(_Result):
    """One low-scoring record of one algorithm, as the evaluate step lists it."""

    record_id: str | None = None
    index: int | None = None
    prompt: str | None = None
    model_input: str | None = None
    reference: str | None = None
    output: str | None = None
    category: str | None = None
    score: float
    scores: dict[str, float | None] = Field(default_factory=dict)


class WorstRecords(_Result):
    """algorithms/<stem>_worst_records.json beside each algorithm's EvalOutput (files.WORST_RECORDS_SUFFIX)."""

    score: str = Field(description="The score the records are ranked by.")
    records: list[WorstRecord]


class DuplicateRow(_Result):
    """A catalog row dropped because an earlier row has the same input and target."""

    line: int
    repeats_line: int


class CatalogManifest(_Result):
    """manifest.json: what preprocess read and kept."""

    dataset_name: str
    source_file: str
    dataset_mime_type: str
    rows_in: int
    rows_kept: int
    quarantined: int
    duplicates: int
    duplicate_rows: list[DuplicateRow] = Field(default_factory=list)
    processed_sha256: str
    model_input_key: str
    target_output_key: str
    category_key: str | None


class CleanupResult(_Result):
    """cleanup.json: what this step did with each resource of the deployment."""

    model: str
    endpoint_name: str
    skipped_reason: str | None = None
    deleted: list[str] = Field(default_factory=list)
    already_absent: list[str] = Field(default_factory=list)
    not_managed: list[str] = Field(default_factory=list)


class Registration(_Result):
    """registration.json, written by the register step."""

    winner: str
    model_package_group_name: str
    model_package_arn: str
    model_package_version: int
    approval_status: str
    registry: Literal["sagemaker", "directory"]
    deployable: bool
    source_uri: str | None = None
    image_uri: str | None = None
    model_data_url: str | None = None
    statistics_uri: str
    constraints_uri: str
    execution_id: str
    model_card_name: str | None = None
    model_card_arn: str | None = None
