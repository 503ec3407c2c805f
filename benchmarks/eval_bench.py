"""Evaluation cost: endpoint calls and wall time of the reference approach against our evaluate step.

A local model endpoint answers after a fixed latency and serves at most `concurrency` requests at
once. In the same run, the same N prompts are scored with the same three fmeval algorithms by
(a) the reference AWS sample's approach — one fmeval `evaluate()` per algorithm, each invoking the
    endpoint through an fmeval ModelRunner (`reference_approach.py`), and
(b) our evaluate step, run as the pipeline runs it (`step_run.py`): each prompt sent once, the outputs
    scored by every algorithm.
Printed: endpoint calls (counted by the endpoint), wall time, and the ratio of wall time to the limit
N x latency / concurrency (no client can answer N prompts faster). Both must report the same
dataset-level scores; a difference is a failure (exit status 1). Timings are printed, never asserted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workload
from benchmarks.common import environment, print_table
from benchmarks.reference_approach import HttpModelRunner, ReferenceRun, run_reference
from benchmarks.step_run import OFFLINE_SCORING_ENV, EvaluateOutcome, StepFolder
from step_code import scoring
from step_code.contract.results import AlgorithmResult
from tests.support.model_server import ModelServer

SCORE_TOLERANCE = 1e-9
SPEEDUP_TARGET = 5.0
INVOCATION_RATIO_TARGET = 1.2


@dataclass(frozen=True)
class AlgorithmComparison:
    eval_name: str
    reference_calls: int
    reference_seconds: float
    scores: int
    max_difference: float | None  # None: the two did not report the same score names
    problem: str | None


@dataclass(frozen=True)
class EvalBenchResult:
    prompts: int
    latency_seconds: float
    concurrency: int
    reference_calls: int
    reference_seconds: float
    reference_peak_in_flight: int
    ours_calls: int
    ours_reported_calls: int
    preprocess_seconds: float
    ours: EvaluateOutcome
    ours_peak_in_flight: int
    algorithms: list[AlgorithmComparison]

    @property
    def limit_seconds(self) -> float:
        """N x latency / concurrency: the least wall time in which any client gets N answers."""
        return self.prompts * self.latency_seconds / self.concurrency

    @property
    def ours_seconds(self) -> float:
        return self.preprocess_seconds + self.ours.wall_seconds

    @property
    def problems(self) -> list[str]:
        found = [f"{a.eval_name}: {a.problem}" for a in self.algorithms if a.problem]
        if self.ours_calls != self.prompts:
            found.append(f"our evaluate step made {self.ours_calls} endpoint calls for {self.prompts} prompts")
        if self.ours_reported_calls != self.ours_calls:
            found.append(
                f"summary.json says {self.ours_reported_calls} model calls, the endpoint saw {self.ours_calls}"
            )
        return found


def compare_scores(reference: ReferenceRun, ours: AlgorithmResult) -> tuple[int, float | None, str | None]:
    """(number of scores, largest absolute difference, problem or None) of one algorithm's dataset scores."""
    if ours.error:
        return 0, None, f"our evaluate step failed to score it: {ours.error}"
    if set(reference.scores) != set(ours.scores):
        return 0, None, f"score names differ: reference {sorted(reference.scores)}, ours {sorted(ours.scores)}"
    differences: list[float] = []
    for name, value in reference.scores.items():
        other = ours.scores[name]
        if value is None or other is None:
            if value is not other:
                return len(reference.scores), None, f"{name}: reference {value}, ours {other}"
            continue
        differences.append(abs(value - other))
    largest = max(differences, default=0.0)
    if largest > SCORE_TOLERANCE:
        return len(reference.scores), largest, f"scores differ by up to {largest:.3g}"
    return len(reference.scores), largest, None


def _algorithm_label(planned: scoring.PlannedAlgorithm) -> str:
    if planned.omitted_judges:
        return f"{planned.name} (without {', '.join(planned.omitted_judges)}: its model is not in the local caches)"
    return planned.name


def _effective_concurrency(calls: int, latency: float, seconds: float | None) -> str:
    return f"{calls * latency / seconds:.2f}" if seconds else "-"


def run(prompts: int = 1000, latency_ms: float = 50.0, concurrency: int = 8) -> EvalBenchResult:
    latency = latency_ms / 1000.0
    with (
        tempfile.TemporaryDirectory(prefix="evalops-eval-bench-") as tmp,
        ModelServer(
            answers=workload.answer, latency_seconds=latency, max_concurrency=concurrency, keep_requests=False
        ) as server,
    ):
        work = Path(tmp)
        with environment(**OFFLINE_SCORING_ENV, EVAL_RESULTS_PATH=str(work / "fmeval-results")):
            catalog = workload.write_catalog(work / "catalog", workload.catalog_rows(prompts))
            config_path = workload.write_config(work, server.url, concurrency=concurrency)
            folder = StepFolder(work / "run", config_path, catalog.parent)
            # Imports every algorithm module once, before either approach is timed.
            planned = scoring.plan_scoring(folder.config.algorithms, skip_missing_judges=True)
            _print_header(prompts, latency, concurrency, planned)

            preprocess_seconds = folder.run_preprocess()
            ours = folder.run_evaluate(workload.MODEL_NAME)
            ours_calls, ours_peak = server.requests_total, server.max_concurrency_observed

            server.reset_counters()
            runner = HttpModelRunner(
                server.url + workload.ENDPOINT_ROUTE, content_template='{"inputs": $prompt}', output="generated_text"
            )
            started = time.perf_counter()
            reference = run_reference(
                planned,
                runner,
                dataset_uri=catalog,
                dataset_name=workload.DATASET_NAME,
                keys=(workload.INPUT_KEY, workload.TARGET_KEY, workload.CATEGORY_KEY),
                prompt_template=workload.PROMPT_TEMPLATE,
                records=prompts,
                count_calls=lambda: server.requests_total,
            )
            reference_seconds = time.perf_counter() - started
    result = EvalBenchResult(
        prompts=prompts,
        latency_seconds=latency,
        concurrency=concurrency,
        reference_calls=server.requests_total,
        reference_seconds=reference_seconds,
        reference_peak_in_flight=server.max_concurrency_observed,
        ours_calls=ours_calls,
        ours_reported_calls=ours.summary.model_calls,
        preprocess_seconds=preprocess_seconds,
        ours=ours,
        ours_peak_in_flight=ours_peak,
        algorithms=_comparisons(reference, ours.summary.algorithms),
    )
    print_result(result)
    return result


def _comparisons(reference: Sequence[ReferenceRun], ours: Sequence[AlgorithmResult]) -> list[AlgorithmComparison]:
    comparisons = []
    for mine, theirs in zip(ours, reference, strict=True):
        count, largest, problem = compare_scores(theirs, mine)
        comparisons.append(
            AlgorithmComparison(
                eval_name=theirs.eval_name,
                reference_calls=theirs.endpoint_calls,
                reference_seconds=theirs.wall_seconds,
                scores=count,
                max_difference=largest,
                problem=problem,
            )
        )
    return comparisons


def _print_header(prompts: int, latency: float, concurrency: int, planned: Sequence[scoring.PlannedAlgorithm]) -> None:
    print(
        f"== evaluation: N={prompts:,} prompts, endpoint latency {latency * 1000:g} ms, "
        f"at most {concurrency} concurrent requests"
    )
    print("   dataset: product reviews labelled positive/negative/neutral; every algorithm scores the same outputs")
    print(f"   algorithms: {'; '.join(_algorithm_label(p) for p in planned)}")
    print(f"   limit N x latency / concurrency = {prompts * latency / concurrency:.2f} s")
    print("   (a) reference sample: one fmeval evaluate() per algorithm, fmeval invoking the endpoint each time")
    print(
        "   (b) our evaluate step, run like the pipeline runs it: each prompt sent once, "
        f"the outputs scored by all {len(planned)} algorithms"
    )


def print_result(result: EvalBenchResult) -> None:
    limit, latency = result.limit_seconds, result.latency_seconds
    invocation = result.ours.invocation_seconds
    rows = [
        (
            "(a) reference: fmeval evaluate() x algorithms",
            f"{result.reference_calls:,}",
            f"{result.reference_seconds:.1f}",
            f"{result.reference_seconds / limit:.2f}",
            _effective_concurrency(result.reference_calls, latency, result.reference_seconds),
            result.reference_peak_in_flight,
        ),
        (
            "(b) ours: preprocess + evaluate step",
            f"{result.ours_calls:,}",
            f"{result.ours_seconds:.1f}",
            f"{result.ours_seconds / limit:.2f}",
            _effective_concurrency(result.ours_calls, latency, result.ours_seconds),
            result.ours_peak_in_flight,
        ),
        (
            "(b) ours: invocation phase alone",
            f"{result.ours_calls:,}",
            f"{invocation:.2f}" if invocation else "-",
            f"{invocation / limit:.2f}" if invocation else "-",
            _effective_concurrency(result.ours_calls, latency, invocation),
            result.ours_peak_in_flight,
        ),
        (
            "(b) ours: the rest (Ray, scoring, files)",
            "0",
            f"{result.ours_seconds - (invocation or 0.0):.1f}",
            "",
            "",
            "",
        ),
    ]
    print()
    print_table(
        ["approach", "endpoint calls", "wall s", "wall / limit", "effective concurrency", "peak in flight"], rows
    )
    print()
    print_table(
        ["algorithm", "(a) calls", "(a) wall s", "dataset scores", "max |(a) - (b)|", "same scores"],
        [
            (
                a.eval_name,
                f"{a.reference_calls:,}",
                f"{a.reference_seconds:.1f}",
                a.scores,
                "-" if a.max_difference is None else f"{a.max_difference:.1e}",
                "no: " + a.problem if a.problem else "yes",
            )
            for a in result.algorithms
        ],
    )
    speedup = result.reference_seconds / result.ours_seconds
    algorithms = len(result.algorithms)
    print()
    print(
        f"targets: calls (b) = N: {result.ours_calls:,} "
        f"[{'met' if result.ours_calls == result.prompts else 'MISSED'}]; "
        f"calls (a) = {algorithms} x N: {result.reference_calls:,} "
        f"[{'as expected' if result.reference_calls == algorithms * result.prompts else 'UNEXPECTED'}]"
    )
    print(
        f"         speed-up (a)/(b) = {speedup:.1f}x, target >= {SPEEDUP_TARGET:g}x "
        f"[{'met' if speedup >= SPEEDUP_TARGET else 'missed'}]"
    )
    if invocation:
        ratio = invocation / limit
        print(
            f"         invocation phase = {ratio:.2f} x limit, target <= {INVOCATION_RATIO_TARGET:g}x "
            f"[{'met' if ratio <= INVOCATION_RATIO_TARGET else 'missed'}]"
        )
