"""Test doubles for the local runner: an evaluate step that answers at once, and a display that records.

Most runner behaviour (order, resume, failures, S3 output) does not depend on fmeval, so those tests
replace `step_code.evaluate_step.main` with `InstantEvaluate`, which parses the real step's arguments and
writes a summary in the real shape. The end-to-end tests (marked slow) run the real step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_definitions.planning.plan import PlannedStep
from step_code import evaluate_step
from step_code.progress import ProgressListener
from tests.step_code.select.summaries import make_summary, worst_record, write_evaluation_output

SAMPLE_MODELS = ("llama3-8b-instruct", "mistral-7b-instruct", "falcon-7b-instruct")


@dataclass
class InstantEvaluate:
    """Stands in for the evaluate step: a score per model, or a failure printed the way run_step prints it."""

    scores: dict[str, float] = field(default_factory=lambda: dict(zip(SAMPLE_MODELS, (0.9, 0.8, 0.4), strict=True)))
    failures: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def main(self, argv: list[str] | None = None, *, progress: ProgressListener | None = None) -> int:
        args = evaluate_step.parse_args(argv)
        self.calls.append(args.model)
        if args.model in self.failures:
            print(f"evaluate: error: {self.failures[args.model]}", file=sys.stderr)
            return 1
        if progress is not None:
            progress.on_progress(args.model, 0, 0, 0, 40)
            progress.on_progress(args.model, 40, 0, 0, 40)
        summary = make_summary(args.model, {"factual_knowledge": self.scores[args.model]}).model_copy(
            update={"execution_id": args.execution_id}
        )
        write_evaluation_output(Path(args.output_dir), summary, [worst_record("Q?", "A", "B", 0.0)])
        return 0


@dataclass
class RecordingEvents:
    """Keeps what the runner reports, for assertions."""

    lines: list[str] = field(default_factory=list)

    def step_started(self, step: PlannedStep) -> None:
        self.lines.append(f"started {step.name}")

    def step_skipped(self, step: PlannedStep) -> None:
        self.lines.append(f"skipped {step.name}")

    def step_finished(self, step: PlannedStep, seconds: float) -> None:
        self.lines.append(f"finished {step.name}")

    def step_failed(self, step: PlannedStep, reason: str) -> None:
        self.lines.append(f"failed {step.name}: {reason}")

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        self.lines.append(f"progress {model} {invoked + cache_hits}/{total}")
