"""The step-kind table: everything the plan, the renderer, the estimate and the local engine know about a kind.

Adding a step kind is one entry here plus its module `step_code/<kind>.py` (with a `main(argv)`); the plan
decides where it runs. tests/pipeline_definitions/planning/test_step_kinds.py fails when an entry is
incomplete or a kind has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from step_code.contract import files
from step_code.contract.job_env import (
    ARTIFACTS_URI_ENV,
    DATA_URI_ENV,
    EXECUTION_ARN_ENV,
    RESOURCE_PREFIX_ENV,
    ROLE_ARN_ENV,
)
from step_code.contract.results import (
    CatalogManifest,
    ChampionAnswers,
    CleanupResult,
    Decision,
    Deployment,
    EvaluationSummary,
    FinetuneResult,
    Registration,
)

if TYPE_CHECKING:
    from pipeline_definitions.estimating.estimate import ModelEstimate

StepKind = Literal[
    "preprocess",
    "finetune",
    "deploy",
    "evaluate",
    "evaluate_shards",
    "merge",
    "cleanup",
    "champion",
    "select",
    "register",
]
# Run options a step takes after its input folders, in this order; `registry-dir` only in a local run.
RunOption = Literal["cache-uri", "response-cache", "approval-status", "registry-dir"]


@dataclass(frozen=True)
class StepKindSpec:
    # `python -m <this>` runs the step; the local engine imports it and calls its `main(argv)`.
    entry_module: str
    # Whether the step names what it creates after the pipeline execution (`--execution-id`).
    takes_execution_id: bool
    run_options: tuple[RunOption, ...]
    # Run-specific environment variables the step's code reads. Only these are set: SageMaker's cache
    # key of a processing step includes its Environment, so an execution ARN in preprocess's would never hit.
    environment: tuple[str, ...]
    # How long the job may run; finetune's limit comes from its config (`max_runtime_seconds`).
    max_runtime_seconds: int | None
    # Minutes of its processing job for the estimate: fixed, or from the estimate of the step's model.
    estimated_minutes: float | Callable[[ModelEstimate], float]
    result_file: str
    result_model: type[BaseModel]
    # The step creates SageMaker resources, so it gets the environment's guardrails (VPC, keys, extra tags).
    creates_resources: bool
    # The step reports per-prompt progress to the local display (its `main` takes `progress=`).
    reports_progress: bool = False


_EVALUATE = StepKindSpec(
    entry_module="step_code.evaluate_step",
    takes_execution_id=True,
    run_options=("cache-uri", "response-cache"),
    environment=(),
    max_runtime_seconds=24 * 3600,
    estimated_minutes=lambda model: model.evaluation_minutes,
    result_file=files.SUMMARY_FILE,
    result_model=EvaluationSummary,
    creates_resources=False,
    reports_progress=True,
)


STEP_KINDS: dict[StepKind, StepKindSpec] = {
    "preprocess": StepKindSpec(
        entry_module="step_code.preprocess",
        takes_execution_id=False,
        run_options=(),
        environment=(),
        max_runtime_seconds=3600,
        estimated_minutes=3.0,
        result_file=files.MANIFEST_FILE,
        result_model=CatalogManifest,
        creates_resources=False,
    ),
    "finetune": StepKindSpec(
        entry_module="step_code.finetune",
        takes_execution_id=True,
        run_options=(),
        # Names, tags and stores what it creates; resolves training data relative to the prompt catalog.
        environment=(RESOURCE_PREFIX_ENV, ROLE_ARN_ENV, EXECUTION_ARN_ENV, ARTIFACTS_URI_ENV, DATA_URI_ENV),
        max_runtime_seconds=None,
        estimated_minutes=lambda model: model.training_hours * 60,
        result_file=files.FINETUNE_FILE,
        result_model=FinetuneResult,
        creates_resources=True,
    ),
    "deploy": StepKindSpec(
        entry_module="step_code.deploy",
        takes_execution_id=True,
        run_options=(),
        environment=(RESOURCE_PREFIX_ENV, ROLE_ARN_ENV, EXECUTION_ARN_ENV, ARTIFACTS_URI_ENV),
        # Waits for the endpoint it creates.
        max_runtime_seconds=2 * 3600,
        estimated_minutes=lambda model: model.deploy_minutes + 1,
        result_file=files.DEPLOYMENT_FILE,
        result_model=Deployment,
        creates_resources=True,
    ),
    # `evaluate` and `select` carry a suffix: a module named `evaluate` or `select` would shadow the Hugging
    # Face `evaluate` library fmeval imports (or the standard `select`) whenever step_code/ lands on sys.path.
    "evaluate": _EVALUATE,
    # A sharded model's evaluate job (one process per instance, each evaluating its shard files) and the
    # merge of its shard results into the model's evaluation (step_code/contract/sharding.py).
    "evaluate_shards": replace(_EVALUATE, entry_module="step_code.evaluate_shards"),
    "merge": StepKindSpec(
        entry_module="step_code.merge_shards",
        takes_execution_id=True,
        run_options=(),
        environment=(),
        max_runtime_seconds=3600,
        estimated_minutes=3.0,
        result_file=files.SUMMARY_FILE,
        result_model=EvaluationSummary,
        creates_resources=False,
    ),
    "cleanup": StepKindSpec(
        entry_module="step_code.cleanup",
        takes_execution_id=False,
        run_options=(),
        environment=(),
        max_runtime_seconds=3600,
        estimated_minutes=3.0,
        result_file=files.CLEANUP_FILE,
        result_model=CleanupResult,
        creates_resources=False,
    ),
    "champion": StepKindSpec(
        entry_module="step_code.champion_step",
        takes_execution_id=True,
        # The champion's package is looked up in the local registry in a local run (SageMaker's otherwise).
        run_options=("cache-uri", "registry-dir"),
        # Names and tags the endpoint a redeployed champion is answered on.
        environment=(RESOURCE_PREFIX_ENV, ROLE_ARN_ENV, EXECUTION_ARN_ENV),
        # A redeployment waits for its endpoint, then evaluates.
        max_runtime_seconds=26 * 3600,
        # Usually its stored outputs fit the run; asking it again costs what evaluating a candidate does.
        estimated_minutes=3.0,
        result_file=files.CHAMPION_FILE,
        result_model=ChampionAnswers,
        # A champion answered on a redeployment of its package.
        creates_resources=True,
    ),
    "select": StepKindSpec(
        entry_module="step_code.select_step",
        takes_execution_id=False,
        run_options=(),
        environment=(),
        max_runtime_seconds=3600,
        estimated_minutes=2.0,
        result_file=files.DECISION_FILE,
        result_model=Decision,
        creates_resources=False,
    ),
    "register": StepKindSpec(
        entry_module="step_code.register",
        takes_execution_id=True,
        run_options=("approval-status", "registry-dir"),
        # Tags the model package and stores its metrics.
        environment=(EXECUTION_ARN_ENV, ARTIFACTS_URI_ENV),
        max_runtime_seconds=3600,
        estimated_minutes=2.0,
        result_file=files.REGISTRATION_FILE,
        result_model=Registration,
        creates_resources=True,
    ),
}
