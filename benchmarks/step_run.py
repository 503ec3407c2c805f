"""Our preprocess and evaluate steps, run the way the pipeline runs them.

The config goes through the loader (`evalops run` does the same), the plan gives each step its
arguments (`plan.step_arguments`), and each step's inputs are links in a folder laid out like the
local runner's: `steps/<Step>/input/<name>` -> the config, the prompt catalog or the producing step's
output. The response cache (`cache/`) is shared by every evaluate run of the folder, as in a local run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import EvaluationPlan, PlannedStep, build_plan, step_arguments
from step_code import evaluate_step, preprocess
from step_code.contract.config import Config
from step_code.contract.files import (
    CATALOG_INPUT,
    CONFIG_FILE,
    CONFIG_INPUT,
    PROCESSED_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
)
from step_code.contract.results import EvaluationSummary
from step_code.scoring import SKIP_JUDGE_SCORES_ENV

EXECUTION_ID = "benchmark"
# No hub downloads (this machine has no internet: fail at once rather than time out), and QAAccuracy
# scored without BERTScore when its model is not in the local caches.
OFFLINE_SCORING_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    SKIP_JUDGE_SCORES_ENV: "1",
}


class StepFailed(RuntimeError):
    """A step's entry point returned non-zero (its one-line reason is on stderr)."""


@dataclass(frozen=True)
class EvaluateOutcome:
    summary: EvaluationSummary
    wall_seconds: float
    # invoke_all's own wall time (cache lookup and model calls), None when no prompt was sent.
    invocation_seconds: float | None


def invocation_seconds(summary: EvaluationSummary, output_dir: Path) -> float | None:
    """The invocation phase's wall time, recovered from summary.json and records.jsonl.

    The evaluate step reports `throughput_per_second` = prompts sent / invoke_all's wall time, and
    records.jsonl says which prompts were sent (`attempts` > 0), so the quotient gives the wall time back.
    """
    if summary.throughput_per_second is None:
        return None
    with (output_dir / RECORDS_FILE).open(encoding="utf-8") as handle:
        sent = sum(1 for line in handle if line.strip() and json.loads(line)["attempts"] > 0)
    return sent / summary.throughput_per_second


class StepFolder:
    """A run folder for one config: run preprocess, then evaluate one model, as often as wanted."""

    def __init__(self, root: Path, config_path: Path, catalog_dir: Path) -> None:
        self.root = root
        self.catalog_dir = catalog_dir
        loaded = load_config(config_path, catalog_dir=catalog_dir)
        self.config: Config = loaded.config
        self.config_dir = root / CONFIG_INPUT
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / CONFIG_FILE).write_text(loaded.normalized_json(), encoding="utf-8")
        self.plan: EvaluationPlan = build_plan(loaded.config)
        self.cache_dir = root / "cache"

    def processed_records(self) -> Path:
        """The processed dataset preprocess wrote (the records every evaluate step reads, in order)."""
        step = self.plan.preprocess
        return self._output(step.name, step.outputs[0]) / PROCESSED_FILE

    def _step_dir(self, name: str) -> Path:
        return self.root / "steps" / name

    def _output(self, step: str, name: str) -> Path:
        return self._step_dir(step) / "output" / name

    def _prepare(self, step: PlannedStep) -> list[str]:
        """Fresh output folders, input links, and the step's argv as the plan builds it."""
        folder = self._step_dir(step.name)
        shutil.rmtree(folder, ignore_errors=True)
        for item in step.inputs:
            if item.name == CONFIG_INPUT:
                target = self.config_dir
            elif item.step is not None and item.output is not None:
                target = self._output(item.step, item.output)
            elif item.name == CATALOG_INPUT:
                target = self.catalog_dir
            else:
                raise StepFailed(f"step {step.name}: input {item.name} has no source in a benchmark folder")
            link = folder / "input" / item.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve(), target_is_directory=True)
        for name in step.outputs:
            (folder / "output" / name).mkdir(parents=True)
        arguments = step_arguments(
            step,
            str(folder / "input"),
            str(folder / "output"),
            execution_id=EXECUTION_ID,
            approval_status="PendingManualApproval",
            cache_uri=str(self.cache_dir),
        )
        return [str(argument) for argument in arguments]

    def _evaluate_step(self, model: str) -> PlannedStep:
        for branch in self.plan.branches:
            if branch.model == model:
                return next(step for step in branch.steps if step.kind == "evaluate")
        raise KeyError(model)

    def run_preprocess(self) -> float:
        """Run preprocess over the catalog folder's current contents; returns its wall time."""
        argv = self._prepare(self.plan.preprocess)
        started = time.perf_counter()
        if preprocess.main(argv) != 0:
            raise StepFailed("preprocess failed (see stderr)")
        return time.perf_counter() - started

    def run_evaluate(self, model: str) -> EvaluateOutcome:
        step = self._evaluate_step(model)
        argv = self._prepare(step)
        started = time.perf_counter()
        if evaluate_step.main(argv) != 0:
            raise StepFailed(f"evaluate of {model} failed (see stderr)")
        wall = time.perf_counter() - started
        output_dir = self._output(step.name, step.outputs[0])
        summary = EvaluationSummary.model_validate_json((output_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        return EvaluateOutcome(summary, wall, invocation_seconds(summary, output_dir))
