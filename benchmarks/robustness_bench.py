"""Robustness: endpoint calls of our evaluate step for a semantic-robustness algorithm, against distinct prompts.

ClassificationAccuracySemanticRobustness asks the model for each record's prompt and for the prompts
of `num_perturbations` perturbed inputs; FactualKnowledge, configured next to it, asks for the
original prompts again. Our evaluate step (preprocess + evaluate, as the pipeline runs them) must send
each distinct prompt once: calls = originals + distinct perturbed prompts. The expected set is worked
out here, independently of the step's planner, with fmeval's own perturbation transform
(`get_perturbation_transform` of the algorithm's config, given each record's own generator as the step
gives it, `step_code.perturbation_seeds`) and fmeval's prompt composer. fmeval's own `evaluate()` would
call the model N x (1 + num_perturbations) times for the robustness algorithm and N times more for the
other one; that figure is computed, not run. A call count other than the distinct prompts is a failure.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import environment, print_table
from benchmarks.step_run import OFFLINE_SCORING_ENV, StepFailed, StepFolder
from pipeline_definitions.loading.loader import ConfigError
from step_code.perturbation_seeds import RecordSeededPerturbation
from tests.support.model_server import ModelServer

PERTURBATION_TYPE = "butter_finger"
NUM_PERTURBATIONS = 5
ROBUSTNESS = {
    "algorithm": "ClassificationAccuracySemanticRobustness",
    "valid_labels": list(workload.LABELS),
    "perturbation_type": PERTURBATION_TYPE,
    "num_perturbations": NUM_PERTURBATIONS,
}
FACTUAL = {"algorithm": "FactualKnowledge", "target_output_delimiter": "<OR>"}
CONCURRENCY = 8


@dataclass(frozen=True)
class RobustnessBenchResult:
    prompts: int
    distinct_prompts: int
    fmeval_calls: int
    endpoint_calls: int | None
    reported_calls: int | None
    seconds: float | None
    failure: str | None

    @property
    def problems(self) -> list[str]:
        if self.failure:
            return [f"robustness: {self.failure}"]
        found = []
        if self.endpoint_calls != self.distinct_prompts:
            found.append(
                f"robustness: {self.endpoint_calls} endpoint calls, expected {self.distinct_prompts} distinct prompts"
            )
        if self.reported_calls != self.endpoint_calls:
            found.append(f"robustness: summary.json says {self.reported_calls}, the endpoint saw {self.endpoint_calls}")
        return found


def distinct_prompts(processed: Path) -> set[str]:
    """Original and perturbed prompts of every processed record, as fmeval's pipeline builds them."""
    from fmeval.eval_algorithms.classification_accuracy_semantic_robustness import (
        ClassificationAccuracySemanticRobustnessConfig,
    )
    from fmeval.eval_algorithms.semantic_robustness_utils import get_perturbation_transform
    from fmeval.model_runners.composers.composers import PromptComposer

    config = ClassificationAccuracySemanticRobustnessConfig(
        valid_labels=list(workload.LABELS), perturbation_type=PERTURBATION_TYPE, num_perturbations=NUM_PERTURBATIONS
    )
    perturb = RecordSeededPerturbation(get_perturbation_transform(config))
    composer = PromptComposer(workload.PROMPT_TEMPLATE)
    prompts: set[str] = set()
    with processed.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row: dict[str, Any] = json.loads(line)
            prompts.add(composer.compose(row["model_input"]))
            record = perturb.perturb(row["record_id"], {"model_input": row["model_input"]})
            prompts.update(composer.compose(record[key]) for key in perturb.output_keys)
    return prompts


def run(prompts: int = 200) -> RobustnessBenchResult:
    print(
        f"== robustness: N={prompts:,} records, ClassificationAccuracySemanticRobustness ({PERTURBATION_TYPE}, "
        f"{NUM_PERTURBATIONS} perturbations) + FactualKnowledge; endpoint calls against distinct prompts"
    )
    fmeval_calls = prompts * (1 + NUM_PERTURBATIONS) + prompts
    with (
        tempfile.TemporaryDirectory(prefix="evalops-robustness-bench-") as tmp,
        ModelServer(answers=workload.answer, max_concurrency=CONCURRENCY, keep_requests=False) as server,
        environment(**OFFLINE_SCORING_ENV),
    ):
        work = Path(tmp)
        catalog_dir = work / "catalog"
        workload.write_catalog(catalog_dir, workload.catalog_rows(prompts))
        config_path = workload.write_config(work, server.url, concurrency=CONCURRENCY, algorithms=[ROBUSTNESS, FACTUAL])
        try:
            folder = StepFolder(work / "run", config_path, catalog_dir)
            folder.run_preprocess()
            expected = len(distinct_prompts(folder.processed_records()))
            server.reset_counters()
            started = time.perf_counter()
            outcome = folder.run_evaluate(workload.MODEL_NAME)
            seconds = time.perf_counter() - started
        except (StepFailed, ConfigError) as exc:
            # The config loader refuses an algorithm it does not support; a step says why on stderr.
            result = RobustnessBenchResult(prompts, 0, fmeval_calls, None, None, None, f"could not run: {exc}")
            print_result(result)
            return result
        result = RobustnessBenchResult(
            prompts, expected, fmeval_calls, server.requests_total, outcome.summary.model_calls, seconds, None
        )
    print_result(result)
    return result


def print_result(result: RobustnessBenchResult) -> None:
    print()
    if result.failure:
        print(f"robustness benchmark {result.failure}")
        return
    print_table(
        ["records", "distinct prompts", "endpoint calls", "fmeval evaluate() calls", "evaluate wall s"],
        [
            (
                f"{result.prompts:,}",
                f"{result.distinct_prompts:,}",
                f"{result.endpoint_calls:,}",
                f"{result.fmeval_calls:,}",
                "-" if result.seconds is None else f"{result.seconds:.1f}",
            )
        ],
    )
    verdict = "met" if result.endpoint_calls == result.distinct_prompts else "MISSED"
    print(f"targets: calls = distinct prompts (originals + perturbations) [{verdict}]")
