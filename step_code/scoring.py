"""Score the stored model outputs with every configured fmeval algorithm, in this process.

The evaluate step sends every planned prompt once (`invocation_plan`), then scores all algorithms in one
pass over the records, batch after batch, with each algorithm's own fmeval transforms and fmeval's own
aggregation (`record_scoring`). The number of model calls does not depend on the number of algorithms.

`plan_scoring()` runs before the model is called and fails with one line naming the algorithm when
its config is wrong or when something it downloads at run time is not in the local caches. With
EVALOPS_SKIP_MISSING_JUDGE_SCORES=1, QAAccuracy whose BERTScore model is missing still computes its
word-overlap scores with fmeval's own transform and leaves BERTScore out (no judge score is ever invented).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from step_code import fmeval_runtime, offline_assets, record_scoring
from step_code.algorithm_report import render_algorithm_page, render_failure_page
from step_code.contract import algorithms as algorithm_table
from step_code.contract.config import AlgorithmConfig
from step_code.contract.files import RECORD_SCORES_SUFFIX, WORST_RECORDS_SUFFIX
from step_code.contract.results import AlgorithmResult, MetricInterval, WorstRecords, metric_names
from step_code.contract.sharding import SCORE_COLUMNS_SUFFIX
from step_code.judge_batching import JudgeSettings
from step_code.judge_device import judge_device
from step_code.score_columns import write_score_columns

if TYPE_CHECKING:
    # fmeval's modules are imported only after the judge models are installed (plan_scoring).
    from step_code.stored_output_runner import Answers, StoredOutputRunner

logger = logging.getLogger(__name__)

SKIP_JUDGE_SCORES_ENV = "EVALOPS_SKIP_MISSING_JUDGE_SCORES"
ALGORITHMS_DIR = "algorithms"


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


def _uses_judges(algorithms: Sequence[AlgorithmConfig]) -> bool:
    known = [
        algorithm_table.lookup(e.algorithm) for e in algorithms if e.algorithm in algorithm_table.algorithm_names()
    ]
    return any(spec.download is not None for spec in known)


def plan_scoring(algorithms: Sequence[AlgorithmConfig], *, skip_missing_judges: bool) -> list[PlannedAlgorithm]:
    """Check every configured algorithm before the model is called; raises ScoringError (one line).

    Installs the judge models first when an algorithm scores with one (fmeval's modules must not be
    imported before that). The others (nothing to download) never import fmeval's helper models, and
    with them transformers and torch, which cost 10 s of a small evaluate step.
    """
    provided_judges = fmeval_runtime.install_judge_models() if _uses_judges(algorithms) else frozenset()
    planned: list[PlannedAlgorithm] = []
    for index, entry in enumerate(algorithms):
        label = _label(index, entry.algorithm)
        try:
            spec = algorithm_table.lookup(entry.algorithm)
        except algorithm_table.UnknownAlgorithmError as exc:
            raise ScoringError(f"{label}: {exc}") from None
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


# Algorithms that take the dataset's distinct target outputs as their labels when `valid_labels` is unset.
LABELLED_ALGORITHMS = frozenset({"ClassificationAccuracy", "ClassificationAccuracySemanticRobustness"})


def needs_target_labels(planned: Sequence[PlannedAlgorithm]) -> bool:
    """Whether scoring needs the distinct target outputs of the answered records (collected while invoking)."""
    return any(
        item.name in LABELLED_ALGORITHMS and not getattr(item.config_object, "valid_labels", None) for item in planned
    )


def skip_missing_judges_requested() -> bool:
    return os.environ.get(SKIP_JUDGE_SCORES_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ScoringInputs:
    """What every algorithm scores: the records in batches, the stored answers, and how they were asked."""

    batches: Callable[[], Iterable[Sequence[record_scoring.ScoringRecord]]]
    answers: Answers
    dataset_name: str
    prompt_template: str
    target_labels: Sequence[str]
    records_failed: int
    # None: the judge device's default.
    judge_batch_size: int | None = None


def _unique_name(eval_name: str, used: set[str]) -> str:
    name, suffix = eval_name, 2
    while name in used:
        name, suffix = f"{eval_name}_{suffix}", suffix + 1
    used.add(name)
    return name


def _instantiate(planned: PlannedAlgorithm) -> Any:
    # PromptStereotyping has nothing to configure: its initializer takes no config.
    if planned.spec.config_class == "EvalAlgorithmConfig":
        return planned.algorithm_class()
    return planned.algorithm_class(planned.config_object)


def _primary(planned: PlannedAlgorithm, names: Sequence[str]) -> record_scoring.Score | None:
    for score in planned.spec.scores_for(planned.fields):
        if score.name in names:
            return record_scoring.Score(score.name, score.higher_is_better)
    return record_scoring.Score(names[0], higher_is_better=True) if names else None


@dataclass
class _Run:
    """One algorithm's pass over the records and where its files go."""

    planned: PlannedAlgorithm
    stem: str
    scorer: record_scoring.AlgorithmScorer | None = None
    records_out: TextIO | None = None
    scores_out: TextIO | None = None
    primary: record_scoring.Score | None = None
    error: str | None = None

    def fail(self, exc: BaseException) -> None:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        logger.error("%s failed: %s", _label(self.planned.index, self.planned.name), message, exc_info=exc)
        self.error = f"{exc.__class__.__name__}: {message}"
        self.scorer = None
        self.close()

    def close(self) -> None:
        if self.records_out is not None:
            self.records_out.close()
            self.records_out = None
        if self.scores_out is not None:
            self.scores_out.close()
            self.scores_out = None


def _start(run: _Run, inputs: ScoringInputs, runner: StoredOutputRunner, folder: Path, judges: JudgeSettings) -> None:
    planned = run.planned
    context = record_scoring.ScoringContext(
        runner=runner,
        prompt_template=inputs.prompt_template,
        target_labels=inputs.target_labels,
        omitted_judges=planned.omitted_judges,
        judges=judges,
    )
    scoring = record_scoring.SCORINGS[planned.name](_instantiate(planned), context)
    run.primary = _primary(planned, scoring.dataset_scores)
    run.records_out = record_scoring.open_records(folder / f"{run.stem}.jsonl")
    run.scores_out = record_scoring.open_records(folder / f"{run.stem}{RECORD_SCORES_SUFFIX}")
    run.scorer = record_scoring.AlgorithmScorer(scoring, run.records_out, run.primary, run.scores_out, judges)


def score_all(
    planned: Sequence[PlannedAlgorithm], inputs: ScoringInputs, output_dir: Path, *, model: str
) -> list[AlgorithmResult]:
    """Score every planned algorithm in one pass over the records; one that fails is reported in its
    result and the others still run."""
    folder = output_dir / ALGORITHMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    runs = [_Run(item, _unique_name(item.spec.eval_name, used)) for item in planned]
    from step_code.stored_output_runner import StoredOutputRunner

    runner = StoredOutputRunner(inputs.answers)
    judges = JudgeSettings.on(judge_device(), inputs.judge_batch_size)
    for run in runs:
        try:
            _start(run, inputs, runner, folder, judges)
        except Exception as exc:
            run.fail(exc)
    for batch in inputs.batches():
        for run in runs:
            if run.scorer is None:
                continue
            try:
                run.scorer.score_batch(batch)
            except Exception as exc:
                run.fail(exc)
    results = []
    for run in runs:
        run.close()
        result = None
        if run.scorer is not None:
            try:
                result = _write_result(run, run.scorer.finish(), inputs, output_dir, model=model)
            except Exception as exc:
                run.fail(exc)
        results.append(result or _failed_result(run.planned, run.stem, output_dir, str(run.error), model=model))
    return results


def _eval_output(planned: PlannedAlgorithm, scored: record_scoring.ScoredAlgorithm, inputs: ScoringInputs) -> Any:
    from fmeval.eval_algorithms import EvalOutput

    return EvalOutput(
        eval_name=planned.spec.eval_name,
        dataset_name=inputs.dataset_name,
        prompt_template=inputs.prompt_template,
        dataset_scores=scored.dataset_scores,
        category_scores=scored.category_scores,
    )


def _write_result(
    run: _Run, scored: record_scoring.ScoredAlgorithm, inputs: ScoringInputs, output_dir: Path, *, model: str
) -> AlgorithmResult:
    """algorithms/<stem>.json (fmeval's EvalOutput), .html and _worst_records.json beside the .jsonl."""
    planned = run.planned
    label = _label(planned.index, planned.name)
    if scored.records_scored == 0:
        raise ScoringError(f"{label}: no record could be scored ({scored.records_unscored} without an answer)")
    folder = output_dir / ALGORITHMS_DIR
    records_path = folder / f"{run.stem}.jsonl"
    json_path, html_path = folder / f"{run.stem}.json", folder / f"{run.stem}.html"
    worst_path = folder / f"{run.stem}{WORST_RECORDS_SUFFIX}"
    relative = lambda path: path.relative_to(output_dir).as_posix()  # noqa: E731

    eval_output = _eval_output(planned, scored, inputs)
    payload = dataclasses.asdict(eval_output)
    payload["output_path"] = relative(records_path)
    scores = {score.name: score.value for score in eval_output.dataset_scores}
    category_scores = {
        category.name: {score.name: score.value for score in category.scores}
        for category in eval_output.category_scores or []
    }
    primary_name = run.primary.name if run.primary else ""
    notes = [
        f"{judge} was not computed: its model is not available offline and {SKIP_JUDGE_SCORES_ENV}=1 was set."
        for judge in planned.omitted_judges
    ]
    unscored = scored.records_unscored - inputs.records_failed
    if unscored > 0:
        notes.append(f"{unscored} record(s) were not scored: a prompt this algorithm asks the model for failed.")
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if scored.columns is not None:
        write_score_columns(folder / f"{run.stem}{SCORE_COLUMNS_SUFFIX}", scored.columns, scored.dataset_score_names)
    listed = WorstRecords.model_validate({"score": primary_name, "records": scored.worst})
    worst_path.write_text(listed.model_dump_json(indent=2) + "\n", encoding="utf-8")
    html_path.write_text(
        render_algorithm_page(
            eval_output=eval_output,
            model=model,
            algorithm=planned.name,
            records_scored=scored.records_scored,
            records_failed=scored.records_unscored,
            worst=scored.worst,
            worst_score_name=primary_name,
            notes=notes,
            higher_is_better={score.name: score.higher_is_better for score in planned.spec.scores_for(planned.fields)},
        ),
        encoding="utf-8",
    )
    return AlgorithmResult(
        algorithm=planned.name,
        eval_name=run.stem,
        scores=scores,
        category_scores=category_scores,
        output_path=relative(json_path),
        report_path=relative(html_path),
        records_path=relative(records_path),
        record_scores_path=relative(folder / f"{run.stem}{RECORD_SCORES_SUFFIX}"),
        intervals=scored.intervals,
    )


def _failed_result(
    planned: PlannedAlgorithm, stem: str, output_dir: Path, error: str, *, model: str
) -> AlgorithmResult:
    """The result of an algorithm that raised, with an EvalOutput-shaped JSON and a page saying why."""
    folder = output_dir / ALGORITHMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jsonl").unlink(missing_ok=True)
    (folder / f"{stem}{RECORD_SCORES_SUFFIX}").unlink(missing_ok=True)
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


def flat_intervals(results: Sequence[AlgorithmResult]) -> dict[str, MetricInterval]:
    """The intervals under the names `flat_metrics` gives their scores."""
    names = metric_names(results)
    return {
        names[(result.eval_name, name)]: interval for result in results for name, interval in result.intervals.items()
    }


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
