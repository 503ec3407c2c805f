"""The merge step of a sharded evaluation: K shard results become the model's one evaluation.

    python -m step_code.merge_shards --config C --output-dir O --model M --execution-id E --dataset-dir D
        --shard-results-dir R

It writes what the evaluate step writes for an unsharded model (summary.json, records.jsonl, and per
algorithm fmeval's EvalOutput, per-record rows, report page, worst records and score columns), so
Select, Register and the report never learn that the model was sharded. Per algorithm, the shards'
score columns are concatenated in shard order (shards are contiguous record ranges, so this is dataset
order) and fmeval's own aggregation runs once over all records: the same dataset and category scores an
unsharded run computes over the same answers. Latency percentiles are over every call of every shard,
cost is recomputed from the merged totals. A shard result that is missing fails the step naming the
shard; an algorithm that failed in any shard is reported as failed with that shard's error.

Why a step and not the first act of Select: Select and Register read `summaries/<model>` for every model
and must not care how a model was evaluated; the merge runs in the model's own branch as soon as its
shards finish (in parallel with the other branches), is retried on its own without re-running K
instances, and keeps Select's input a list of small summaries.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from step_code import scoring
from step_code.aws_resources import ControlPlaneError
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import (
    MANIFEST_FILE,
    RECORD_SCORES_SUFFIX,
    RECORDS_FILE,
    SUMMARY_FILE,
    WORST_RECORDS_SUFFIX,
)
from step_code.contract.results import AlgorithmResult, CatalogManifest, CostEstimate, EvaluationSummary, WorstRecords
from step_code.contract.sharding import SCORE_COLUMNS_SUFFIX, TOTALS_FILE, shard_stem
from step_code.evaluate_step import staged_output
from step_code.invocation import InvocationTotals
from step_code.record_scoring import WORST_RECORDS, FrameDataset, ScoredAlgorithm, _mean_intervals
from step_code.run_cost import instance_hours_cost, per_token_cost
from step_code.score_columns import read_score_columns
from step_code.shard_totals import merge_totals, read_totals, write_totals
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, read_model, run_step

# Algorithms whose dataset scores fmeval computes with a method of the algorithm object (scikit-learn
# scores over the label columns) rather than `aggregate_evaluation_scores`'s means.
AGGREGATED_BY_ALGORITHM = {"ClassificationAccuracy": "_generate_dataset_and_category_level_scores"}


def _shard_summaries(results_dir: Path, count: int) -> list[tuple[Path, EvaluationSummary]]:
    shards = []
    for index in range(count):
        folder = results_dir / shard_stem(index, count)
        if not (folder / SUMMARY_FILE).is_file():
            raise ControlPlaneError(
                f"{folder}: shard {index} of {count} wrote no {SUMMARY_FILE} (its instance failed or never ran)"
            )
        shards.append((folder, read_model(folder / SUMMARY_FILE, EvaluationSummary)))
    return shards


def _aggregate(planned: scoring.PlannedAlgorithm, frame: Any, names: list[str]) -> tuple[list[Any], list[Any] | None]:
    from fmeval.constants import MEAN
    from fmeval.eval_algorithms.util import aggregate_evaluation_scores

    method = AGGREGATED_BY_ALGORITHM.get(planned.name)
    if method is not None:
        result: tuple[list[Any], list[Any] | None] = getattr(scoring._instantiate(planned), method)(FrameDataset(frame))
        return result
    return aggregate_evaluation_scores(FrameDataset(frame), names, agg_method=MEAN)


def _finite(score: Any) -> Any:
    value = score.value
    if isinstance(value, float) and math.isnan(value):
        return type(score)(name=score.name, value=None)
    return score if value is None or isinstance(value, bool) else type(score)(name=score.name, value=float(value))


def _worst(folders: Sequence[Path], offsets: Sequence[int], stem: str, higher_is_better: bool) -> list[dict[str, Any]]:
    """The shards' worst records with dataset indexes, ranked as the evaluate step ranks them."""
    candidates = []
    for folder, offset in zip(folders, offsets, strict=True):
        listed = read_model(folder / scoring.ALGORITHMS_DIR / f"{stem}{WORST_RECORDS_SUFFIX}", WorstRecords)
        for record in listed.records:
            entry = record.model_dump()
            entry["index"] = (record.index or 0) + offset
            badness = -record.score if higher_is_better else record.score
            candidates.append((badness, -entry["index"], entry))
    return [entry for _, _, entry in heapq.nlargest(WORST_RECORDS, candidates, key=lambda item: item[:2])]


def _concatenate(sources: Sequence[Path], target: Path) -> None:
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as lines:
                for line in lines:
                    out.write(line)


def _merge_algorithm(
    planned: scoring.PlannedAlgorithm,
    results: Sequence[AlgorithmResult],
    folders: Sequence[Path],
    offsets: Sequence[int],
    inputs: scoring.ScoringInputs,
    output: Path,
    *,
    model: str,
    records_total: int,
) -> AlgorithmResult:
    import pandas as pd

    stem = results[0].eval_name
    for index, result in enumerate(results):
        if result.error is not None:
            return scoring._failed_result(planned, stem, output, f"shard {index}: {result.error}", model=model)
    columns = [
        read_score_columns(folder / scoring.ALGORITHMS_DIR / f"{stem}{SCORE_COLUMNS_SUFFIX}") for folder in folders
    ]
    names = columns[0][1]
    frame = pd.concat([frame for frame, _ in columns], ignore_index=True)
    dataset_scores, category_scores = _aggregate(planned, frame, names)
    primary = scoring._primary(planned, names)
    algorithms = output / scoring.ALGORITHMS_DIR
    algorithms.mkdir(parents=True, exist_ok=True)
    for suffix in (".jsonl", RECORD_SCORES_SUFFIX):
        _concatenate(
            [folder / scoring.ALGORITHMS_DIR / f"{stem}{suffix}" for folder in folders], algorithms / f"{stem}{suffix}"
        )
    scored = ScoredAlgorithm(
        intervals=_mean_intervals(frame, names, dataset_scores),
        dataset_scores=[_finite(score) for score in dataset_scores],
        category_scores=[
            type(category)(name=category.name, scores=[_finite(score) for score in category.scores])
            for category in category_scores or []
        ]
        or None,
        records_scored=len(frame),
        records_unscored=records_total - len(frame),
        worst=_worst(folders, offsets, stem, primary.higher_is_better) if primary else [],
        columns=frame,
        dataset_score_names=names,
    )
    run = scoring._Run(planned, stem, primary=primary)
    return scoring._write_result(run, scored, inputs, output, model=model)


def _records(folders: Sequence[Path], offsets: Sequence[int], target: Path) -> None:
    """records.jsonl of all shards in dataset order, each row's index made the dataset's."""
    with target.open("w", encoding="utf-8") as out:
        for folder, offset in zip(folders, offsets, strict=True):
            with (folder / RECORDS_FILE).open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    row["index"] = row["index"] + offset
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _cost(first: CostEstimate, model: ModelConfig, config: Config, totals: InvocationTotals) -> CostEstimate:
    """The shards' common basis, recomputed over all their calls (the endpoint served them at once)."""
    if first.basis == "instance-hours" and first.instance_type:
        return instance_hours_cost(first.instance_type, first.instance_count or 1, config, totals)
    if first.basis == "per-token" and model.model_id:
        return per_token_cost(model.model_id, config, totals)
    return first


def merge(
    config_path: Path, output_dir: str, model_name: str, execution_id: str, dataset_dir: Path, results_dir: Path
) -> EvaluationSummary:
    config = read_config(config_path)
    model = config_model(config, model_name, config_path)
    count = model.shard_count(config.pipeline)
    shards = _shard_summaries(results_dir, count)
    folders = [folder for folder, _ in shards]
    summaries = [summary for _, summary in shards]
    manifest = read_model(dataset_dir / MANIFEST_FILE, CatalogManifest)
    records_total = sum(summary.records_total for summary in summaries)
    if records_total != manifest.rows_kept:
        raise ControlPlaneError(
            f"{results_dir}: the {count} shards evaluated {records_total} records; the processed dataset has "
            f"{manifest.rows_kept}"
        )
    offsets = [sum(summary.records_total for summary in summaries[:index]) for index in range(count)]
    totals = merge_totals([read_totals(folder / TOTALS_FILE) for folder in folders])
    try:
        planned = scoring.plan_scoring(config.algorithms, skip_missing_judges=scoring.skip_missing_judges_requested())
    except scoring.ScoringError as exc:
        raise ControlPlaneError(f"{config_path}: {exc}") from None
    failed = sum(summary.records_failed for summary in summaries)
    inputs = scoring.ScoringInputs(
        batches=list,
        answers=None,  # type: ignore[arg-type]
        dataset_name=config.dataset.dataset_name,
        prompt_template=model.evaluation_config.prompt_template,
        target_labels=(),
        records_failed=failed,
    )
    first = summaries[0]
    with staged_output(output_dir) as folder:
        _records(folders, offsets, folder / RECORDS_FILE)
        results = [
            _merge_algorithm(
                item,
                [summary.algorithms[position] for summary in summaries],
                folders,
                offsets,
                inputs,
                folder,
                model=model.name,
                records_total=records_total,
            )
            for position, item in enumerate(planned)
        ]
        summary = first.model_copy(
            update={
                "dataset_sha256": manifest.processed_sha256,
                "records_total": records_total,
                "records_succeeded": records_total - failed,
                "records_failed": failed,
                "model_calls": totals.model_calls,
                "cache_hits": totals.cache_hits,
                "latency": totals.latency_stats(),
                "tokens": totals.token_stats(),
                "throughput_per_second": totals.sent / totals.wall_seconds
                if totals.sent and totals.wall_seconds > 0
                else None,
                "metrics": scoring.flat_metrics(results),
                "intervals": scoring.flat_intervals(results),
                "algorithms": results,
                "cost": _cost(first.cost, model, config, totals),
                "execution_id": execution_id,
            }
        )
        (folder / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
        write_totals(folder / TOTALS_FILE, totals)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = step_parser("step_code.merge_shards", __doc__, model=True, execution_id=True, output_type=str)
    parser.add_argument("--dataset-dir", required=True, type=Path)
    parser.add_argument("--shard-results-dir", required=True, type=Path)
    ns = parser.parse_args(argv)

    def body() -> None:
        merge(ns.config, ns.output_dir, ns.model, ns.execution_id, ns.dataset_dir, ns.shard_results_dir)

    return run_step("merge", body)


if __name__ == "__main__":
    raise SystemExit(main())
