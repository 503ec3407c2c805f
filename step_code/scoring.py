"""Score stored model outputs with every configured fmeval algorithm.

The evaluate step calls each model once per prompt and writes the outputs to a JSON Lines file; every
algorithm then reads that file through fmeval's `model_output_location` (`evaluate(model=None)`), so
the number of model calls does not depend on the number of algorithms.

fmeval samples 100 records unless told otherwise: we pass the full record count and check that the
per-record output fmeval saved has exactly that many lines.

`plan_scoring()` runs before the model is called and fails with one line naming the algorithm when
its config is wrong, when it cannot score stored outputs, or when something it downloads at run time
is not in the local caches. With EVALOPS_SKIP_MISSING_JUDGE_SCORES=1, QAAccuracy whose BERTScore model
is missing still computes its word-overlap scores with fmeval's own transform and leaves BERTScore out
(no judge score is ever invented).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from step_code import fmeval_runtime, offline_assets
from step_code.algorithm_report import render_algorithm_page, render_failure_page
from step_code.contract import algorithms as algorithm_table
from step_code.contract.config import AlgorithmConfig
from step_code.contract.files import WORST_RECORDS_SUFFIX
from step_code.contract.results import AlgorithmResult, WorstRecords

logger = logging.getLogger(__name__)

SKIP_JUDGE_SCORES_ENV = "EVALOPS_SKIP_MISSING_JUDGE_SCORES"
ALGORITHMS_DIR = "algorithms"
WORST_RECORDS = 10
JSONLINES_MIME = "application/jsonlines"
# Column names fmeval reads (DataConfig *_location JMESPaths) and writes in its per-record output.
MODEL_INPUT = "model_input"
TARGET_OUTPUT = "target_output"
MODEL_OUTPUT = "model_output"
CATEGORY = "category"


class ScoringError(Exception):
    """A configured algorithm cannot run; the message is one line naming it."""


@dataclass(frozen=True)
class PlannedAlgorithm:
    index: int
    name: str
    spec: algorithm_table.AlgorithmSpec
    algorithm_class: Any
    config_object: Any
    fields: Mapping[str, Any]
    # Judge scores left out because their model is missing and the user allowed it (QAAccuracy only).
    omitted_judges: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoringData:
    """The stored outputs to score: succeeded records only, one JSON object per line."""

    path: Path
    record_count: int
    dataset_name: str
    with_category: bool
    records_failed: int
    # The model's prompt template; fmeval reports none when it did not invoke the model itself.
    prompt_template: str
    # Rendered prompt and record id of each stored output, keyed like fmeval's per-record output rows.
    records: Sequence[Mapping[str, Any]]


def _label(index: int, algorithm: str) -> str:
    return f"algorithms[{index}] ({algorithm})"


def _import(index: int, algorithm: str, module: str, attribute: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        raise ScoringError(f"{_label(index, algorithm)}: cannot import module {module!r} ({exc})") from None
    except AttributeError:
        raise ScoringError(f"{_label(index, algorithm)}: module {module!r} has no {attribute!r}") from None


def _build_config(index: int, algorithm: str, config_class: Any, fields: Mapping[str, Any]) -> Any:
    from fmeval.exceptions import EvalAlgorithmClientError

    known = {f.name for f in dataclasses.fields(config_class)} if dataclasses.is_dataclass(config_class) else set()
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ScoringError(
            f"{_label(index, algorithm)}: unknown field(s) {unknown} for {config_class.__name__} "
            f"(expected some of {sorted(known)})"
        )
    try:
        return config_class(**fields)
    except (EvalAlgorithmClientError, TypeError, ValueError) as exc:
        raise ScoringError(f"{_label(index, algorithm)}: {exc}") from None


def _missing_message(label: str, missing: Sequence[offline_assets.Asset], *, can_skip: bool) -> str:
    what = " and ".join(asset.description for asset in missing)
    hint = "build and run the step image (step_code/Dockerfile bakes them) or run `python -m step_code.offline_assets`"
    hint += " with internet access"
    if can_skip:
        hint += f", or set {SKIP_JUDGE_SCORES_ENV}=1 to score it without BERTScore"
    return f"{label} needs {what}, which is not in the local caches (HF_HOME, NLTK_DATA, TORCH_HOME): {hint}"


def plan_scoring(algorithms: Sequence[AlgorithmConfig], *, skip_missing_judges: bool) -> list[PlannedAlgorithm]:
    """Check every configured algorithm before the model is called; raises ScoringError (one line).

    Installs the judge models first (fmeval's modules must not be imported before that).
    """
    provided_judges = fmeval_runtime.install_judge_models()
    planned: list[PlannedAlgorithm] = []
    for index, entry in enumerate(algorithms):
        label = _label(index, entry.algorithm)
        try:
            spec = algorithm_table.lookup(entry.algorithm)
        except algorithm_table.UnknownAlgorithmError as exc:
            raise ScoringError(f"{label}: {exc}") from None
        if spec.invokes_model:
            raise ScoringError(
                f"{label} re-invokes the model on perturbed prompts; the evaluate step calls each model once per "
                "prompt and scores the stored outputs, so it cannot run this algorithm"
            )
        module_name = entry.module or spec.module
        algorithm_class = _import(index, entry.algorithm, module_name, entry.algorithm)
        config_class = _import(index, entry.algorithm, module_name, entry.config or spec.config_class)
        fields = entry.config_fields()
        config_object = _build_config(index, entry.algorithm, config_class, fields)
        missing = offline_assets.missing_assets(entry.algorithm, fields, provided_judges)
        omitted: tuple[str, ...] = ()
        if missing:
            only_judge = entry.algorithm == "QAAccuracy" and all(asset.judge == "bertscore" for asset in missing)
            if not (only_judge and skip_missing_judges):
                raise ScoringError(_missing_message(label, missing, can_skip=only_judge))
            omitted = ("bertscore",)
            logger.warning(
                "%s: BERTScore assets missing; %s=1 so it is scored without BERTScore", label, SKIP_JUDGE_SCORES_ENV
            )
        planned.append(
            PlannedAlgorithm(
                index=index,
                name=entry.algorithm,
                spec=spec,
                algorithm_class=algorithm_class,
                config_object=config_object,
                fields=fields,
                omitted_judges=omitted,
            )
        )
    return planned


def skip_missing_judges_requested() -> bool:
    return os.environ.get(SKIP_JUDGE_SCORES_ENV, "").strip().lower() in ("1", "true", "yes")


def _data_config(data: ScoringData) -> Any:
    from fmeval.data_loaders.data_config import DataConfig

    return DataConfig(
        dataset_name=data.dataset_name,
        dataset_uri=str(data.path),
        dataset_mime_type=JSONLINES_MIME,
        model_input_location=MODEL_INPUT,
        target_output_location=TARGET_OUTPUT,
        model_output_location=MODEL_OUTPUT,
        category_location=CATEGORY if data.with_category else None,
    )


def _run_fmeval(planned: PlannedAlgorithm, data: ScoringData, saved_path: Path) -> Any:
    from fmeval.eval_algorithms.save_strategy import FileSaveStrategy

    save_strategy = FileSaveStrategy(str(saved_path))
    if planned.omitted_judges:
        return _run_qa_accuracy_without_bertscore(planned, data, save_strategy)
    outputs = planned.algorithm_class(planned.config_object).evaluate(
        model=None,
        dataset_config=_data_config(data),
        num_records=data.record_count,
        save=True,
        save_strategy=save_strategy,
    )
    if len(outputs) != 1:
        raise ScoringError(
            f"{_label(planned.index, planned.name)}: fmeval returned {len(outputs)} results for 1 dataset"
        )
    return outputs[0]


def _run_qa_accuracy_without_bertscore(planned: PlannedAlgorithm, data: ScoringData, save_strategy: Any) -> Any:
    """QAAccuracy's word-overlap scores through fmeval's own transform and evaluation loop."""
    from fmeval.constants import MEAN
    from fmeval.data_loaders.util import get_dataset
    from fmeval.eval_algorithms.common import evaluate_dataset
    from fmeval.eval_algorithms.qa_accuracy import QA_ACCURACY_SCORE_NAMES, QAAccuracyScores
    from fmeval.transforms.transform_pipeline import TransformPipeline
    from fmeval.util import get_eval_results_path

    pipeline = TransformPipeline(
        [QAAccuracyScores(target_output_delimiter=planned.config_object.target_output_delimiter)]
    )
    return evaluate_dataset(
        dataset=get_dataset(_data_config(data), data.record_count),
        pipeline=pipeline,
        dataset_name=data.dataset_name,
        eval_name=planned.spec.eval_name,
        metric_names=list(QA_ACCURACY_SCORE_NAMES),
        eval_results_path=get_eval_results_path(),
        model=None,
        agg_method=MEAN,
        save=True,
        save_strategy=save_strategy,
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get(MODEL_INPUT), row.get(TARGET_OUTPUT), row.get(MODEL_OUTPUT), row.get(CATEGORY))


def _scores_of(row: Mapping[str, Any]) -> dict[str, float | None]:
    return {score["name"]: score.get("value") for score in row.get("scores", [])}


def worst_records(
    saved_rows: Iterable[Mapping[str, Any]],
    data: ScoringData,
    score: algorithm_table.Score,
    *,
    limit: int = WORST_RECORDS,
) -> list[dict[str, Any]]:
    """The `limit` records with the worst `score_name`, with their prompt, reference, output and scores.

    fmeval's saved rows carry no record id, and fmeval reorders records; rows are matched back to our
    records by their (input, reference, output, category), and equal rows score equally.
    """
    by_key: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for record in data.records:
        by_key[_row_key(record)].append(record)
    taken: dict[tuple[Any, ...], int] = defaultdict(int)
    candidates: list[dict[str, Any]] = []
    for row in saved_rows:
        key = _row_key(row)
        matches = by_key.get(key, [])
        record = matches[taken[key]] if taken[key] < len(matches) else {}
        taken[key] += 1
        scores = _scores_of(row)
        value = scores.get(score.name)
        if value is None:
            continue
        candidates.append(
            {
                "record_id": record.get("record_id"),
                "index": record.get("index"),
                "prompt": record.get("prompt", row.get(MODEL_INPUT)),
                "model_input": row.get(MODEL_INPUT),
                "reference": row.get(TARGET_OUTPUT),
                "output": row.get(MODEL_OUTPUT),
                "category": row.get(CATEGORY),
                "score": value,
                "scores": scores,
            }
        )
    descending = not score.higher_is_better
    candidates.sort(
        key=lambda c: (-c["score"] if descending else c["score"], c["index"] if c["index"] is not None else 0)
    )
    return candidates[:limit]


def _unique_name(eval_name: str, used: set[str]) -> str:
    name, suffix = eval_name, 2
    while name in used:
        name, suffix = f"{eval_name}_{suffix}", suffix + 1
    used.add(name)
    return name


def _eval_output_json(eval_output: Any, records_path: str) -> dict[str, Any]:
    payload = dataclasses.asdict(eval_output)
    # fmeval fills output_path from EVAL_RESULTS_PATH; the per-record file is where we told it to save.
    payload["output_path"] = records_path
    return payload


def score_algorithm(
    planned: PlannedAlgorithm, data: ScoringData, output_dir: Path, *, model: str, file_stem: str
) -> AlgorithmResult:
    """Run one algorithm and write algorithms/<stem>.json, .jsonl, .html and _worst_records.json."""
    folder = output_dir / ALGORITHMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    saved_path = folder / f"{file_stem}.jsonl"
    json_path, html_path = folder / f"{file_stem}.json", folder / f"{file_stem}.html"
    worst_path = folder / f"{file_stem}{WORST_RECORDS_SUFFIX}"
    relative = lambda path: path.relative_to(output_dir).as_posix()  # noqa: E731
    label = _label(planned.index, planned.name)

    eval_output = dataclasses.replace(_run_fmeval(planned, data, saved_path), prompt_template=data.prompt_template)
    if eval_output.error:
        raise ScoringError(f"{label}: fmeval reported {eval_output.error}")
    saved_rows = _read_jsonl(saved_path)
    if len(saved_rows) != data.record_count:
        raise ScoringError(f"{label}: fmeval scored {len(saved_rows)} of {data.record_count} records")

    scores = {score.name: score.value for score in eval_output.dataset_scores or []}
    category_scores = {
        category.name: {score.name: score.value for score in category.scores}
        for category in eval_output.category_scores or []
    }
    primary = next(
        (s for s in planned.spec.scores_for(planned.fields) if scores.get(s.name) is not None),
        algorithm_table.Score(next(iter(scores), ""), higher_is_better=True),
    )
    worst = worst_records(saved_rows, data, primary)
    notes = [
        f"{judge} was not computed: its model is not available offline and {SKIP_JUDGE_SCORES_ENV}=1 was set."
        for judge in planned.omitted_judges
    ]
    json_path.write_text(json.dumps(_eval_output_json(eval_output, relative(saved_path)), indent=2) + "\n")
    listed = WorstRecords.model_validate({"score": primary.name, "records": worst})
    worst_path.write_text(listed.model_dump_json(indent=2) + "\n", encoding="utf-8")
    html_path.write_text(
        render_algorithm_page(
            eval_output=eval_output,
            model=model,
            algorithm=planned.name,
            records_scored=data.record_count,
            records_failed=data.records_failed,
            worst=worst,
            worst_score_name=primary.name,
            notes=notes,
        ),
        encoding="utf-8",
    )
    return AlgorithmResult(
        algorithm=planned.name,
        eval_name=eval_output.eval_name,
        scores=scores,
        category_scores=category_scores,
        output_path=relative(json_path),
        report_path=relative(html_path),
        records_path=relative(saved_path),
    )


def score_all(
    planned: Sequence[PlannedAlgorithm], data: ScoringData, output_dir: Path, *, model: str
) -> list[AlgorithmResult]:
    """Run every planned algorithm; one that fails is reported in its result and the others still run.

    fmeval's `evaluate()` spends most of its time on fixed Ray Data overhead rather than CPU, so the
    algorithms run side by side, except when one runs a judge model (BERTScore, detoxify): two of those
    at once starve Ray's map tasks on a small instance.
    """
    used: set[str] = set()
    stems = [_unique_name(item.spec.eval_name, used) for item in planned]

    def run(item: PlannedAlgorithm, stem: str) -> AlgorithmResult:
        try:
            return score_algorithm(item, data, output_dir, model=model, file_stem=stem)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            logger.exception("%s failed: %s", _label(item.index, item.name), message)
            return _failed_result(item, stem, output_dir, f"{exc.__class__.__name__}: {message}", model=model)

    if len(planned) > 1 and not any(_runs_judge_model(item) for item in planned):
        with ThreadPoolExecutor(max_workers=len(planned), thread_name_prefix="fmeval-score") as pool:
            return list(pool.map(run, planned, stems))
    return [run(item, stem) for item, stem in zip(planned, stems, strict=True)]


def _runs_judge_model(planned: PlannedAlgorithm) -> bool:
    return planned.spec.download is not None and not planned.omitted_judges


def _failed_result(
    planned: PlannedAlgorithm, stem: str, output_dir: Path, error: str, *, model: str
) -> AlgorithmResult:
    """The result of an algorithm that raised, with an EvalOutput-shaped JSON and a page saying why."""
    folder = output_dir / ALGORITHMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"eval_name": planned.spec.eval_name, "dataset_scores": None, "error": error}
    (folder / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (folder / f"{stem}.html").write_text(render_failure_page(model=model, algorithm=planned.name, error=error))
    return AlgorithmResult(
        algorithm=planned.name,
        eval_name=stem,
        scores={},
        output_path=f"{ALGORITHMS_DIR}/{stem}.json",
        report_path=f"{ALGORITHMS_DIR}/{stem}.html",
        error=error,
    )


def flat_metrics(results: Sequence[AlgorithmResult]) -> dict[str, float | None]:
    """Score name -> value over all algorithms; a name two algorithms share is kept as `<eval_name>.<score>`."""
    owners: dict[str, int] = defaultdict(int)
    for result in results:
        for name in result.scores:
            owners[name] += 1
    metrics: dict[str, float | None] = {}
    for result in results:
        for name, value in result.scores.items():
            metrics[name if owners[name] == 1 else f"{result.eval_name}.{name}"] = value
    return metrics
