"""Evaluation cost: endpoint calls and wall time of the reference approach against `evalops run --local`.

A local model endpoint answers after a fixed latency and serves at most `concurrency` requests at
once. In the same run, the same N prompts are scored with the same fmeval algorithms by
(a) the reference AWS sample's approach — one fmeval `evaluate()` per algorithm, each invoking the
    endpoint through an fmeval ModelRunner (`reference_approach.py`), and
(b) `evalops run CONFIG --local` end to end (preprocess, evaluate, select, register, report), called
    in this process as the command line calls it, after every fmeval module was imported once (so
    neither approach pays the imports).
Printed: endpoint calls (counted by the endpoint), wall time, the ratio of wall time to the limit
N x latency / concurrency (no client can answer N prompts faster), the speed-up (a)/(b), and (b)'s
invocation phase (first to last answer, seen at the endpoint) against the time from the last answer to
the end of the run. Both must report the same dataset-level scores; a difference, or a call count
other than N for (b), is a failure (exit status 1). Timings are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import environment, print_table
from benchmarks.reference_approach import HttpModelRunner, ReferenceRun, run_reference
from benchmarks.step_run import OFFLINE_SCORING_ENV
from pipeline_definitions.cli import main as cli
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import build_plan
from step_code import scoring
from step_code.contract.files import SUMMARY_FILE
from step_code.contract.results import AlgorithmResult, EvaluationSummary
from tests.support.model_server import ModelServer

SCORE_TOLERANCE = 1e-9
# (prompts, algorithms) -> the speed-up target for it; other configurations print no target.
SPEEDUP_TARGETS: Mapping[tuple[int, int], float] = {(200, 2): 10.0, (1000, 3): 20.0}
AFTER_LAST_ANSWER_TARGET = 0.05  # of the invocation phase, for the lexical algorithms
CONFIGURATIONS: tuple[tuple[int, int], ...] = ((200, 2), (1000, 3))


@dataclass(frozen=True)
class AlgorithmComparison:
    eval_name: str
    reference_calls: int
    reference_seconds: float
    scores: int
    max_difference: float | None  # None: the two did not report the same score names
    problem: str | None


class AnswerClock:
    """The model of the endpoint, timed: when the first and the last answer left (monotonic seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: float | None = None
        self.last: float | None = None

    def __call__(self, prompt: str) -> str:
        now = time.monotonic()
        with self._lock:
            self.first = now if self.first is None else self.first
            self.last = now
        return workload.answer(prompt)

    def reset(self) -> None:
        with self._lock:
            self.first = self.last = None


@dataclass(frozen=True)
class EvalBenchResult:
    prompts: int
    latency_seconds: float
    concurrency: int
    reference_calls: int
    reference_seconds: float
    reference_peak_in_flight: int
    ours_status: int
    ours_calls: int
    ours_reported_calls: int | None
    ours_seconds: float
    ours_peak_in_flight: int
    # First to last answer at the endpoint, plus one latency (the first request arrived that much earlier).
    invocation_seconds: float | None
    after_last_answer_seconds: float | None
    algorithms: list[AlgorithmComparison]

    @property
    def limit_seconds(self) -> float:
        """N x latency / concurrency: the least wall time in which any client gets N answers."""
        return self.prompts * self.latency_seconds / self.concurrency

    @property
    def speedup(self) -> float:
        return self.reference_seconds / self.ours_seconds

    @property
    def after_last_answer_fraction(self) -> float | None:
        if self.invocation_seconds is None or self.after_last_answer_seconds is None:
            return None
        return self.after_last_answer_seconds / self.invocation_seconds

    @property
    def problems(self) -> list[str]:
        where = f"N={self.prompts:,}, {len(self.algorithms)} algorithms"
        found = [f"{where}: {a.eval_name}: {a.problem}" for a in self.algorithms if a.problem]
        if self.ours_status != 0:
            found.append(f"{where}: evalops run --local exited with status {self.ours_status}")
        if self.ours_calls != self.prompts:
            found.append(
                f"{where}: evalops run --local made {self.ours_calls} endpoint calls for {self.prompts} prompts"
            )
        if self.ours_reported_calls != self.ours_calls:
            found.append(
                f"{where}: summary.json says {self.ours_reported_calls} model calls, the endpoint saw {self.ours_calls}"
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


@dataclass(frozen=True)
class OursRun:
    status: int
    seconds: float
    summary: EvaluationSummary | None


def run_ours(config_path: Path, catalog_dir: Path, output: Path) -> OursRun:
    """`evalops run CONFIG --local` as the command line runs it; its printout is not the benchmark's, but
    what it said on stderr is shown when it fails."""
    printed, said = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(said):
        status = cli.main(
            ["run", str(config_path), "--local", "--catalog-dir", str(catalog_dir), "--output", str(output), "--fresh"]
        )
    seconds = time.perf_counter() - started
    if status != 0:
        print("\n".join(said.getvalue().strip().splitlines()[-5:]))
    plan = build_plan(load_config(config_path, catalog_dir=catalog_dir).config)
    step = next(step for branch in plan.branches for step in branch.steps if step.kind == "evaluate")
    path = output / "steps" / step.name / "output" / step.outputs[0] / SUMMARY_FILE
    summary = EvaluationSummary.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    return OursRun(status, seconds, summary)


def run(prompts: int = 1000, latency_ms: float = 50.0, concurrency: int = 8, algorithms: int = 3) -> EvalBenchResult:
    latency = latency_ms / 1000.0
    chosen: Sequence[Mapping[str, Any]] = workload.ALGORITHMS[:algorithms]
    clock = AnswerClock()
    with (
        tempfile.TemporaryDirectory(prefix="evalops-eval-bench-") as tmp,
        ModelServer(answers=clock, latency_seconds=latency, max_concurrency=concurrency, keep_requests=False) as server,
    ):
        work = Path(tmp)
        with environment(**OFFLINE_SCORING_ENV, EVAL_RESULTS_PATH=str(work / "fmeval-results")):
            catalog = workload.write_catalog(work / "catalog", workload.catalog_rows(prompts))
            config_path = workload.write_config(work, server.url, concurrency=concurrency, algorithms=chosen)
            config = load_config(config_path, catalog_dir=catalog.parent).config
            # Imports every algorithm module once, before either approach is timed.
            planned = scoring.plan_scoring(config.algorithms, skip_missing_judges=True)
            _print_header(prompts, latency, concurrency, planned)

            ours = run_ours(config_path, catalog.parent, work / "run")
            ended = time.monotonic()
            ours_calls, ours_peak = server.requests_total, server.max_concurrency_observed
            first, last = clock.first, clock.last
            invocation = None if first is None or last is None else last - first + latency
            after_last = None if last is None else ended - last

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
    summary = ours.summary
    result = EvalBenchResult(
        prompts=prompts,
        latency_seconds=latency,
        concurrency=concurrency,
        reference_calls=server.requests_total,
        reference_seconds=reference_seconds,
        reference_peak_in_flight=server.max_concurrency_observed,
        ours_status=ours.status,
        ours_calls=ours_calls,
        ours_reported_calls=summary.model_calls if summary else None,
        ours_seconds=ours.seconds,
        ours_peak_in_flight=ours_peak,
        invocation_seconds=invocation,
        after_last_answer_seconds=after_last,
        algorithms=_comparisons(reference, summary.algorithms if summary else []),
    )
    print_result(result)
    return result


def run_configurations(
    configurations: Sequence[tuple[int, int]], latency_ms: float, concurrency: int
) -> list[EvalBenchResult]:
    """One comparison per (prompts, algorithms), then the side-by-side summary of all of them."""
    results = []
    for prompts, algorithms in configurations:
        results.append(run(prompts, latency_ms, concurrency, algorithms))
        print()
    print_summary(results)
    return results


def _comparisons(reference: Sequence[ReferenceRun], ours: Sequence[AlgorithmResult]) -> list[AlgorithmComparison]:
    by_name = {result.eval_name: result for result in ours}
    comparisons = []
    for theirs in reference:
        mine = by_name.get(theirs.eval_name)
        count, largest, problem = (
            (0, None, "evalops run --local reported no result for it") if mine is None else compare_scores(theirs, mine)
        )
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
        f"== evaluation: N={prompts:,} prompts, {len(planned)} algorithms, endpoint latency {latency * 1000:g} ms, "
        f"at most {concurrency} concurrent requests"
    )
    print("   dataset: product reviews labelled positive/negative/neutral; every algorithm scores the same outputs")
    print(f"   algorithms: {'; '.join(_algorithm_label(p) for p in planned)}")
    print(f"   limit N x latency / concurrency = {prompts * latency / concurrency:.2f} s")
    print("   (a) reference sample: one fmeval evaluate() per algorithm, fmeval invoking the endpoint each time")
    print("   (b) evalops run --local end to end: preprocess, evaluate (each prompt sent once), select, register")


def _seconds(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_result(result: EvalBenchResult) -> None:
    limit, latency = result.limit_seconds, result.latency_seconds
    invocation = result.invocation_seconds
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
            "(b) ours: evalops run --local",
            f"{result.ours_calls:,}",
            f"{result.ours_seconds:.1f}",
            f"{result.ours_seconds / limit:.2f}",
            _effective_concurrency(result.ours_calls, latency, result.ours_seconds),
            result.ours_peak_in_flight,
        ),
        (
            "(b) ours: invocation phase (first to last answer)",
            f"{result.ours_calls:,}",
            _seconds(invocation, 2),
            f"{invocation / limit:.2f}" if invocation else "-",
            _effective_concurrency(result.ours_calls, latency, invocation),
            result.ours_peak_in_flight,
        ),
        ("(b) ours: after the last answer", "0", _seconds(result.after_last_answer_seconds), "", "", ""),
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
    algorithms = len(result.algorithms)
    print()
    print(
        f"targets: calls (b) = N: {result.ours_calls:,} "
        f"[{'met' if result.ours_calls == result.prompts else 'MISSED'}]; "
        f"calls (a) = {algorithms} x N: {result.reference_calls:,} "
        f"[{'as expected' if result.reference_calls == algorithms * result.prompts else 'UNEXPECTED'}]"
    )
    target = SPEEDUP_TARGETS.get((result.prompts, algorithms))
    verdict = "" if target is None else f", target >= {target:g}x [{'met' if result.speedup >= target else 'missed'}]"
    print(f"         speed-up (a)/(b) = {result.speedup:.1f}x{verdict}")
    fraction = result.after_last_answer_fraction
    if fraction is not None:
        print(
            f"         after the last answer = {fraction:.0%} of the invocation phase, "
            f"target <= {AFTER_LAST_ANSWER_TARGET:.0%} [{'met' if fraction <= AFTER_LAST_ANSWER_TARGET else 'missed'}]"
        )


def print_summary(results: Sequence[EvalBenchResult]) -> None:
    print("== evaluation, side by side")
    print()
    print_table(
        [
            "configuration",
            "(a) calls",
            "(a) wall s",
            "(b) calls",
            "(b) wall s",
            "speed-up",
            "target",
            "after last answer / invocation",
            "same scores",
        ],
        [
            (
                f"N={r.prompts:,}, {len(r.algorithms)} algorithms",
                f"{r.reference_calls:,}",
                f"{r.reference_seconds:.1f}",
                f"{r.ours_calls:,}",
                f"{r.ours_seconds:.1f}",
                f"{r.speedup:.1f}x",
                f"{SPEEDUP_TARGETS[(r.prompts, len(r.algorithms))]:g}x"
                if (r.prompts, len(r.algorithms)) in SPEEDUP_TARGETS
                else "-",
                "-" if r.after_last_answer_fraction is None else f"{r.after_last_answer_fraction:.0%}",
                "yes" if not any(a.problem for a in r.algorithms) else "NO",
            )
            for r in results
        ],
    )
