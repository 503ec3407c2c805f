"""Re-run cost: endpoint calls of our evaluate step when the evaluation is run again.

Three evaluate runs of one run folder (one response cache), as re-runs of a pipeline or `evalops run`
do: the first on an empty cache (N calls), then with the catalog unchanged (no call), then with every
tenth review edited (a call for each edited prompt, 10% of N). Each run is a fresh preprocess and
evaluate step (the step's own output is rebuilt; only the response cache carries over). Printed: calls
counted by the endpoint against what is expected, cache hits and wall times. A call count other than
the expected one is a failure (exit status 1); timings are printed, never asserted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workload
from benchmarks.common import environment, print_table
from benchmarks.step_run import OFFLINE_SCORING_ENV, EvaluateOutcome, StepFolder
from tests.support.model_server import ModelServer

EDITED_EVERY = 10


@dataclass(frozen=True)
class RerunCase:
    name: str
    prompts_changed: int
    expected_calls: int
    endpoint_calls: int
    outcome: EvaluateOutcome


@dataclass(frozen=True)
class RerunBenchResult:
    prompts: int
    cases: list[RerunCase]

    @property
    def problems(self) -> list[str]:
        found = []
        for case in self.cases:
            if case.endpoint_calls != case.expected_calls:
                found.append(f"{case.name}: {case.endpoint_calls} endpoint calls, expected {case.expected_calls}")
            if case.outcome.summary.model_calls != case.endpoint_calls:
                found.append(
                    f"{case.name}: summary.json says {case.outcome.summary.model_calls} model calls, "
                    f"the endpoint saw {case.endpoint_calls}"
                )
        return found


def run(prompts: int = 1000, latency_ms: float = 50.0, concurrency: int = 8) -> RerunBenchResult:
    edited = workload.edited_count(prompts, EDITED_EVERY)
    scenarios = [
        ("first run, empty cache", workload.catalog_rows(prompts), prompts, prompts),
        ("catalog unchanged", workload.catalog_rows(prompts), 0, 0),
        (
            f"every {EDITED_EVERY}th prompt edited",
            workload.catalog_rows(prompts, edited_every=EDITED_EVERY),
            edited,
            edited,
        ),
    ]
    print(
        f"== re-runs: our evaluate step on N={prompts:,} prompts three times with one response cache "
        f"(endpoint latency {latency_ms:g} ms, at most {concurrency} concurrent requests)"
    )
    cases: list[RerunCase] = []
    with (
        tempfile.TemporaryDirectory(prefix="evalops-rerun-bench-") as tmp,
        ModelServer(
            answers=workload.answer,
            latency_seconds=latency_ms / 1000.0,
            max_concurrency=concurrency,
            keep_requests=False,
        ) as server,
    ):
        work = Path(tmp)
        with environment(**OFFLINE_SCORING_ENV):
            config_path = workload.write_config(work, server.url, concurrency=concurrency)
            catalog_dir = work / "catalog"
            workload.write_catalog(catalog_dir, scenarios[0][1])
            folder = StepFolder(work / "run", config_path, catalog_dir)
            for name, rows, changed, expected in scenarios:
                workload.write_catalog(catalog_dir, rows)
                server.reset_counters()
                folder.run_preprocess()
                outcome = folder.run_evaluate(workload.MODEL_NAME)
                cases.append(RerunCase(name, changed, expected, server.requests_total, outcome))
    result = RerunBenchResult(prompts, cases)
    print_result(result)
    return result


def print_result(result: RerunBenchResult) -> None:
    print()
    print_table(
        ["run", "prompts changed", "endpoint calls", "expected", "cache hits", "evaluate wall s", "invocation s"],
        [
            (
                case.name,
                f"{case.prompts_changed:,}",
                f"{case.endpoint_calls:,}",
                f"{case.expected_calls:,}",
                f"{case.outcome.summary.cache_hits:,}",
                f"{case.outcome.wall_seconds:.1f}",
                "-" if case.outcome.invocation_seconds is None else f"{case.outcome.invocation_seconds:.2f}",
            )
            for case in result.cases
        ],
    )
