"""Sharded evaluate on one machine: a catalog over K = 1, 2, 4 shard processes against a fast local endpoint.

For each K the config says `shards: K`; preprocess writes K shard files, the K instance processes run
`step_code.evaluate_shards` exactly as the local engine runs a multi-instance step
(`pipeline_definitions.local.instances`), each with its own `max_concurrency`, and the merge step
aggregates their results. K = 1 goes through the same shard and merge path (one shard). Each K starts
with an empty response cache, so every prompt is sent once per K. Printed per K: evaluate job wall time
(all instances), merge wall time, prompts/s, peak RSS of each shard process (psutil, sampled every
0.2 s). A merged score that differs from K = 1's (dataset, category or per-record), or an endpoint call
count other than N, is a failure.

Then a semantic-robustness algorithm (ClassificationAccuracySemanticRobustness, `butter_finger` x 2) over
K = 1 and 2, at N = 2,000 at most (its perturbed prompts triple the calls, and its module imports torch in
every shard process, so it runs apart from the table above): each record's perturbations are its own
(`step_code.perturbation_seeds`), so its merged scores, per record too, and its endpoint calls must be
K = 1's.

Then a projection to SageMaker, from what was measured here: the shard processes' CPU-seconds per record
(this machine's scoring and client cost, the endpoint answering at once) and the estimate's assumptions
for the endpoint (`estimating/scale.py`), for 1M prompts and 10 models: instances, wall time, cost and
S3 requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from benchmarks import workload
from benchmarks.common import environment, print_table
from benchmarks.step_run import OFFLINE_SCORING_ENV, StepFailed, StepFolder
from pipeline_definitions.estimating.estimate import DEPLOY_MINUTES, SECONDS_PER_CALL
from pipeline_definitions.estimating.scale import ENDPOINT_INSTANCE_CONCURRENCY, JOB_START_MINUTES, MERGE_MINUTES
from pipeline_definitions.local.instances import run_instances
from pipeline_definitions.planning.plan import PlannedStep, sharded_evaluation
from step_code import merge_shards, preprocess
from step_code.contract.files import DATASET, SUMMARY_FILE
from step_code.contract.pricing import price_table
from step_code.contract.results import EvaluationSummary
from step_code.contract.sharding import shards_output
from tests.support.model_server import ModelServer

SHARD_COUNTS = (1, 2, 4)
DEFAULT_PROMPTS = 100_000
CONCURRENCY = 8
# Two algorithms that import no judge model (QAAccuracy's module imports torch: 330 MB per process).
ALGORITHMS = (workload.ALGORITHMS[0], workload.ALGORITHMS[2])
ROBUSTNESS = {
    "algorithm": "ClassificationAccuracySemanticRobustness",
    "valid_labels": list(workload.LABELS),
    "perturbation_type": "butter_finger",
    "num_perturbations": 2,
}
ROBUSTNESS_PROMPTS = 2_000
ROBUSTNESS_SHARD_COUNTS = (1, 2)
PROJECTED_PROMPTS = 1_000_000
PROJECTED_MODELS = 10
PROJECTED_SHARDS = 8
EVALUATE_INSTANCE = "ml.m5.xlarge"
ENDPOINT_INSTANCE = "ml.g5.2xlarge"
MERGE_INSTANCE = "ml.m5.large"
# S3 request prices (us-east-1 standard): USD per 1,000 requests.
S3_PUT_USD_PER_1K = 0.005
S3_GET_USD_PER_1K = 0.0004
DELETE_BATCH = 1000
# Files an evaluation writes per algorithm (EvalOutput, rows, page, worst records, score columns), and besides.
FILES_PER_ALGORITHM = 5
FILES_PER_EVALUATION = 3


@dataclass(frozen=True)
class ShardCase:
    shards: int
    prompts: int
    endpoint_calls: int
    evaluate_seconds: float
    merge_seconds: float
    cpu_seconds: float
    peak_rss_mb: list[float]
    metrics: dict[str, float | None]
    category_scores: list[dict[str, dict[str, float | None]]]
    # sha256 of the merged per-record score files (algorithms/*.jsonl), in name order.
    records_sha256: str

    @property
    def prompts_per_second(self) -> float:
        return self.prompts / self.evaluate_seconds

    def same_scores(self, other: ShardCase) -> bool:
        return (self.metrics, self.category_scores, self.records_sha256) == (
            other.metrics,
            other.category_scores,
            other.records_sha256,
        )


@dataclass(frozen=True)
class ShardBenchResult:
    cases: list[ShardCase]
    robustness: list[ShardCase]

    @property
    def problems(self) -> list[str]:
        found = []
        first = self.cases[0]
        for case in self.cases:
            if case.endpoint_calls != case.prompts:
                found.append(f"shards K={case.shards}: {case.endpoint_calls:,} endpoint calls, expected N")
            if not case.same_scores(first):
                found.append(f"shards K={case.shards}: merged scores differ from K={first.shards}")
        base = self.robustness[0]
        if base.endpoint_calls <= base.prompts:
            found.append(f"shards robustness K={base.shards}: {base.endpoint_calls:,} endpoint calls, no perturbation")
        for case in self.robustness[1:]:
            if case.endpoint_calls != base.endpoint_calls:
                found.append(
                    f"shards robustness K={case.shards}: {case.endpoint_calls:,} endpoint calls, "
                    f"K={base.shards} made {base.endpoint_calls:,}"
                )
            if not case.same_scores(base):
                found.append(f"shards robustness K={case.shards}: merged scores differ from K={base.shards}")
        return found


class ShardRssSampler:
    """Peak RSS and CPU time of each shard process (children running step_code.evaluate_shards)."""

    def __init__(self, interval: float = 0.2) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._sample, name="shard-rss", daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    if "step_code.evaluate_shards" in " ".join(child.cmdline()):
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
                        times = child.cpu_times()
                        self.cpu[child.pid] = times.user + times.system
            self._stop.wait(self._interval)

    def __enter__(self) -> ShardRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _steps(folder: StepFolder, shards: int) -> tuple[PlannedStep, PlannedStep, PlannedStep]:
    """Preprocess, the evaluate job and the merge of the plan; for K = 1 the same shard path with one shard."""
    plan = folder.plan
    if shards > 1:
        return plan.preprocess, plan.step(f"Evaluate-{workload.MODEL_NAME}"), plan.step(f"Merge-{workload.MODEL_NAME}")
    pre = replace(plan.preprocess, outputs=(DATASET, shards_output(1)))
    job, merge = sharded_evaluation(folder._evaluate_step(workload.MODEL_NAME), 1, pre, MERGE_INSTANCE)
    return pre, job, merge


def _config(case_dir: Path, url: str, shards: int, algorithms: tuple[dict[str, Any], ...]) -> Path:
    path = workload.write_config(case_dir, url, concurrency=CONCURRENCY, algorithms=algorithms)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["pipeline"]["shards"] = shards
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _records_sha256(output: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((output / "algorithms").glob("*.jsonl")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run_one(
    shards: int,
    prompts: int,
    server: ModelServer,
    case_dir: Path,
    catalog: Path,
    algorithms: tuple[dict[str, Any], ...],
) -> ShardCase:
    folder = StepFolder(case_dir / "run", _config(case_dir, server.url, shards, algorithms), catalog)
    pre, job, merge = _steps(folder, shards)
    if preprocess.main(folder._prepare(pre)) != 0:
        raise StepFailed("preprocess failed (see stderr)")
    server.reset_counters()
    argv = folder._prepare(job)
    started = time.perf_counter()
    with ShardRssSampler() as sampler:
        status, reason = run_instances(job, case_dir / "run" / "steps" / job.name, argv)
    evaluate_seconds = time.perf_counter() - started
    if status != 0:
        raise StepFailed(f"shards K={shards}: {reason}")
    merge_argv = folder._prepare(merge)
    started = time.perf_counter()
    if merge_shards.main(merge_argv) != 0:
        raise StepFailed(f"merge K={shards} failed (see stderr)")
    merge_seconds = time.perf_counter() - started
    output = case_dir / "run" / "steps" / merge.name / "output" / merge.outputs[0]
    summary = EvaluationSummary.model_validate_json((output / SUMMARY_FILE).read_text(encoding="utf-8"))
    return ShardCase(
        shards=shards,
        prompts=prompts,
        endpoint_calls=server.requests_total,
        evaluate_seconds=evaluate_seconds,
        merge_seconds=merge_seconds,
        cpu_seconds=sum(sampler.cpu.values()),
        peak_rss_mb=sorted(peak / 2**20 for peak in sampler.peaks.values()),
        metrics=summary.metrics,
        category_scores=[result.category_scores for result in summary.algorithms],
        records_sha256=_records_sha256(output),
    )


def run(prompts: int = DEFAULT_PROMPTS, shard_counts: tuple[int, ...] = SHARD_COUNTS) -> ShardBenchResult:
    print(
        f"== shards: N = {prompts:,} prompts over K = {', '.join(map(str, shard_counts))} shard processes, endpoint "
        f"latency 0 ms, {CONCURRENCY} concurrent requests per shard; FactualKnowledge and ClassificationAccuracy"
    )
    robust_prompts = min(prompts, ROBUSTNESS_PROMPTS)
    cases, robustness = [], []
    with (
        tempfile.TemporaryDirectory(prefix="evalops-shard-bench-") as tmp,
        ModelServer(answers=workload.answer, keep_requests=False) as server,
        environment(**OFFLINE_SCORING_ENV),
    ):
        catalog = Path(tmp, "catalog")
        workload.write_catalog(catalog, workload.catalog_rows(prompts))
        for shards in shard_counts:
            cases.append(_run_one(shards, prompts, server, Path(tmp, f"k{shards}"), catalog, ALGORITHMS))
            shutil.rmtree(Path(tmp, f"k{shards}"), ignore_errors=True)
        robust_catalog = Path(tmp, "robustness-catalog")
        workload.write_catalog(robust_catalog, workload.catalog_rows(robust_prompts))
        for shards in ROBUSTNESS_SHARD_COUNTS:
            case_dir = Path(tmp, f"robustness-k{shards}")
            robustness.append(_run_one(shards, robust_prompts, server, case_dir, robust_catalog, (ROBUSTNESS,)))
            shutil.rmtree(case_dir, ignore_errors=True)
    result = ShardBenchResult(cases, robustness)
    print_result(result)
    return result


def print_result(result: ShardBenchResult) -> None:
    print()
    print_table(
        ["K", "N", "endpoint calls", "evaluate wall s", "merge s", "prompts/s", "CPU s", "peak RSS per shard MB"],
        [
            (
                case.shards,
                f"{case.prompts:,}",
                f"{case.endpoint_calls:,}",
                f"{case.evaluate_seconds:.1f}",
                f"{case.merge_seconds:.1f}",
                f"{case.prompts_per_second:,.0f}",
                f"{case.cpu_seconds:.0f}",
                ", ".join(f"{peak:,.0f}" for peak in case.peak_rss_mb),
            )
            for case in result.cases
        ],
    )
    same = all(case.same_scores(result.cases[0]) for case in result.cases)
    print(f"merged scores identical to K={result.cases[0].shards}: {'yes' if same else 'NO'}")
    print("(2 cores shared by 8 workers: K processes compete for those 2 cores with each other and everybody else)")
    base = result.robustness[0]
    print()
    print(
        f"Robustness: {ROBUSTNESS['algorithm']} ({ROBUSTNESS['perturbation_type']} x "
        f"{ROBUSTNESS['num_perturbations']}), each K with an empty response cache"
    )
    print_table(
        ["robustness K", "N", "endpoint calls", "evaluate wall s"],
        [
            (
                f"robustness K={case.shards}",
                f"{case.prompts:,}",
                f"{case.endpoint_calls:,}",
                f"{case.evaluate_seconds:.1f}",
            )
            for case in result.robustness
        ],
    )
    same = all(case.same_scores(base) and case.endpoint_calls == base.endpoint_calls for case in result.robustness)
    verdict = "yes" if same else "NO"
    print(f"robustness scores (dataset, category, per record) and calls identical to K={base.shards}: {verdict}")
    print()
    for line in projection(result.cases[0]):
        print(line)


def projection(case: ShardCase) -> list[str]:
    """1M prompts and 10 models on SageMaker, from the measured CPU-seconds per record."""
    prices: Any = price_table().instance_usd_per_hour
    cpu_per_record = case.cpu_seconds / case.prompts
    shards, prompts = PROJECTED_SHARDS, PROJECTED_PROMPTS
    in_flight = shards * CONCURRENCY
    endpoint_instances = math.ceil(in_flight / ENDPOINT_INSTANCE_CONCURRENCY)
    invoke_minutes = prompts * SECONDS_PER_CALL / in_flight / 60
    # An ml.m5.xlarge has 4 vCPUs; the shard process is mostly one core (scoring), so one core per shard.
    cpu_minutes = prompts / shards * cpu_per_record / 60
    evaluate_minutes = JOB_START_MINUTES + max(invoke_minutes, cpu_minutes)
    wall = evaluate_minutes + JOB_START_MINUTES + MERGE_MINUTES
    evaluate_usd = prices["processing"][EVALUATE_INSTANCE] * shards * evaluate_minutes / 60
    endpoint_usd = (
        prices["inference"][ENDPOINT_INSTANCE] * endpoint_instances * (DEPLOY_MINUTES + evaluate_minutes) / 60
    )
    merge_usd = prices["processing"][MERGE_INSTANCE] * MERGE_MINUTES / 60
    per_model = evaluate_usd + endpoint_usd + merge_usd
    algorithms = len(ALGORITHMS)
    # S3 per model: a loose cache entry per answer, then one segment and DeleteObjects in batches; the
    # instances' outputs; the merge reads every shard's files. Preprocess: K shard files (shared by all models).
    puts = prompts + shards * (1 + FILES_PER_EVALUATION + FILES_PER_ALGORITHM * algorithms)
    puts += FILES_PER_EVALUATION + FILES_PER_ALGORITHM * algorithms
    deletes = math.ceil(prompts / DELETE_BATCH)
    gets = shards * (1 + FILES_PER_EVALUATION + FILES_PER_ALGORITHM * algorithms) + 2 * shards
    s3_usd = ((puts + deletes) * S3_PUT_USD_PER_1K + gets * S3_GET_USD_PER_1K) / 1000
    models = PROJECTED_MODELS
    return [
        f"Projection: {prompts:,} prompts x {models} models on SageMaker, {shards} shards per model "
        f"({EVALUATE_INSTANCE}), {CONCURRENCY} requests per shard, {ENDPOINT_INSTANCE} endpoints",
        f"  measured here: {cpu_per_record * 1000:.2f} CPU-ms per record in a shard process (client + scoring, "
        f"K={case.shards}, 0 ms endpoint)",
        f"  per model: {in_flight} requests in flight -> {endpoint_instances} endpoint instance(s) at "
        f"{ENDPOINT_INSTANCE_CONCURRENCY} each; calls {invoke_minutes:.0f} min at {SECONDS_PER_CALL:g} s per call, "
        f"shard CPU {cpu_minutes:.0f} min; evaluate job {evaluate_minutes:.0f} min, with merge {wall:.0f} min",
        f"  per model: ${evaluate_usd:,.2f} evaluate instances + ${endpoint_usd:,.2f} endpoint "
        f"+ ${merge_usd:,.2f} merge + ${s3_usd:,.2f} S3 = ${per_model + s3_usd:,.2f}",
        f"  S3 requests per model: {puts:,} PUT, {deletes:,} DeleteObjects, {gets:,} GET "
        f"(the response cache's loose entries are {prompts:,} of the PUTs)",
        f"  {models} models, {models} branches at once (pipeline.parallelism {models}): {models * shards} evaluate "
        f"instances and {models * endpoint_instances} endpoint instances at the peak, {wall:.0f} min wall, "
        f"${models * (per_model + s3_usd):,.2f}",
        f"  with parallelism 4 (the default): {math.ceil(models / 4)} waves, about "
        f"{math.ceil(models / 4) * (wall + DEPLOY_MINUTES):.0f} min",
    ]
