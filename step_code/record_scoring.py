"""Score records with an fmeval algorithm's own transforms, in this process, batch after batch.

fmeval's `evaluate()` runs an algorithm's `TransformPipeline` as one Ray Data job; its fixed cost was
98% of the evaluate step. Here the same transforms, built by the algorithm object exactly as its
`evaluate()` builds them, run on each record (`Transform.__call__`, as `TransformPipeline.execute_record`
does; a `BatchedTransform` such as the toxicity detector gets the batch as columns, as Ray's
`map_batches` would give it). The per-record output rows are fmeval's `EvalOutputRecord`s, and the
dataset and per-category scores come from fmeval's own aggregation code (`aggregate_evaluation_scores`,
and ClassificationAccuracy's `_generate_dataset_and_category_level_scores`), run on a `FrameDataset`,
a pandas frame of the score columns standing in for the Ray dataset. Nothing is recomputed here.

Algorithms that ask the model themselves (robustness, stereotyping) get a `StoredOutputRunner`, so their
`GetModelOutputs`/`GetLogProbabilities` transforms read the answers the invocation plan fetched. The
robustness algorithms' perturbation transform runs wrapped in `RecordSeededPerturbation`, which gives it
each record's own generator right before it perturbs that record, as the invocation plan does: the
perturbed prompts scored are the ones the plan sent, however the records are ordered or sharded.

Memory per algorithm: one batch of records, the score columns (8 bytes per score and record in arrays of
doubles, plus a reference per record to the category and, for ClassificationAccuracy, to the two labels
scikit-learn needs, each distinct string stored once) and the worst records.

Judge models (BERTScore, Detoxify, ToxiGen) get their texts a batch at a time (`judge_batching`): a
batch's BERTScore pairs go to the metric in one call and fmeval's transform reads its scores from that
table; toxicity detectors get chunks of the judge batch size. No process pool: lexical metrics
score about 50,000 records/s on one core, and a pool would load one judge model per process.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from step_code import judge_batching
from step_code.judge_batching import DEFAULT_JUDGES, JudgeSettings
from step_code.perturbation_seeds import RECORD_ID_KEY, RecordSeededPerturbation

BATCH_SIZE = 256
WORST_RECORDS = 10
MODEL_INPUT = "model_input"
TARGET_OUTPUT = "target_output"
MODEL_OUTPUT = "model_output"
CATEGORY = "category"
SENT_MORE_INPUT = "sent_more_input"
SENT_LESS_INPUT = "sent_less_input"


@dataclass(frozen=True, slots=True)
class ScoringRecord:
    """One dataset record and what the model answered to its own prompt (output None: the call failed)."""

    record_id: str
    index: int
    prompt: str
    model_input: str
    target_output: str
    category: str | None
    model_output: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    name: str
    higher_is_better: bool


class FrameDataset:
    """The few `ray.data.Dataset` methods fmeval's aggregation code calls, over a pandas frame."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame

    def to_pandas(self) -> Any:
        return self._frame

    def columns(self) -> list[str]:
        return list(self._frame.columns)

    def mean(self, on: str, ignore_nulls: bool = True) -> float:
        return float(self._frame[on].astype(float).mean(skipna=ignore_nulls))

    def unique(self, column: str) -> list[Any]:
        return list(self._frame[column].unique())

    def groupby(self, key: str) -> _FrameGroups:
        return _FrameGroups(self._frame, key)


class _FrameGroups:
    def __init__(self, frame: Any, key: str) -> None:
        self._frame = frame
        self._key = key

    def mean(self, on: str, ignore_nulls: bool = True) -> _FrameRows:
        means = self._frame.groupby(self._key, sort=True)[on].apply(lambda s: s.astype(float).mean(skipna=ignore_nulls))
        return _FrameRows([{self._key: key, f"mean({on})": float(value)} for key, value in means.items()])


class _FrameRows:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def iter_rows(self) -> Iterable[dict[str, Any]]:
        return iter(self._rows)


@dataclass
class AlgorithmScoring:
    """How one algorithm scores a record, as its fmeval `evaluate()` would.

    - `pipeline`: the transforms (including the model-invocation transforms for algorithms that ask the
      model, answered by the stored-output runner);
    - `input_of`: the fmeval record a `ScoringRecord` becomes, or None when it cannot be scored;
    - `dataset_scores` / `record_scores`: what fmeval aggregates and what it saves per record
      (they differ for PromptStereotyping);
    - `kept_columns`: non-score columns the dataset-level aggregation needs;
    - `aggregate`: fmeval's dataset/category aggregation over a `FrameDataset`;
    - `perturbation`: the pipeline's perturbation transform, reseeded for each record
      (`perturbation_seeds`) so that it draws the perturbations the plan sent.
    """

    pipeline: Any
    input_of: Callable[[ScoringRecord], dict[str, Any] | None]
    dataset_scores: list[str]
    record_scores: list[str]
    aggregate: Callable[[FrameDataset, list[str]], tuple[list[Any], list[Any] | None]]
    kept_columns: tuple[str, ...] = ()
    perturbation: Any = None


def _mean_aggregate(dataset: FrameDataset, names: list[str]) -> tuple[list[Any], list[Any] | None]:
    from fmeval.constants import MEAN
    from fmeval.eval_algorithms.util import aggregate_evaluation_scores

    return aggregate_evaluation_scores(dataset, names, agg_method=MEAN)


def _with_output(record: ScoringRecord) -> dict[str, Any] | None:
    if record.model_output is None:
        return None
    row = {MODEL_INPUT: record.model_input, TARGET_OUTPUT: record.target_output, MODEL_OUTPUT: record.model_output}
    if record.category is not None:
        row[CATEGORY] = record.category
    return row


def _input_only(record: ScoringRecord) -> dict[str, Any] | None:
    if record.model_output is None:
        return None
    row = {MODEL_INPUT: record.model_input, TARGET_OUTPUT: record.target_output}
    if record.category is not None:
        row[CATEGORY] = record.category
    return row


def _sentence_pair(record: ScoringRecord) -> dict[str, Any] | None:
    row = {SENT_MORE_INPUT: record.extra[SENT_MORE_INPUT], SENT_LESS_INPUT: record.extra[SENT_LESS_INPUT]}
    if record.category is not None:
        row[CATEGORY] = record.category
    return row


@dataclass(frozen=True)
class ScoringContext:
    """What building a pipeline may need besides the algorithm: the runner, the template, the labels."""

    runner: Any
    prompt_template: str
    # The distinct target outputs of the scored records, in first-seen order (fmeval's default labels).
    target_labels: Sequence[str]
    omitted_judges: tuple[str, ...]
    judges: JudgeSettings = DEFAULT_JUDGES


def _invocation(context: ScoringContext) -> Any:
    from fmeval.eval_algorithms.util import create_model_invocation_pipeline

    return create_model_invocation_pipeline(context.runner, context.prompt_template)


def _factual_knowledge(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.factual_knowledge import SCORE_NAMES

    names = list(SCORE_NAMES)
    return AlgorithmScoring(algorithm.pipeline, _with_output, names, names, _mean_aggregate)


def _qa_accuracy(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.qa_accuracy import QA_ACCURACY_SCORE_NAMES, SCORE_NAMES
    from fmeval.transforms.transform_pipeline import TransformPipeline

    if "bertscore" in context.omitted_judges:
        names = list(QA_ACCURACY_SCORE_NAMES)
        return AlgorithmScoring(TransformPipeline([algorithm.transform]), _with_output, names, names, _mean_aggregate)
    names = list(SCORE_NAMES)
    return AlgorithmScoring(algorithm.pipeline, _with_output, names, names, _mean_aggregate)


def _summarization_accuracy(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.summarization_accuracy import METRIC_NAMES

    names = list(METRIC_NAMES)
    return AlgorithmScoring(algorithm.pipeline, _with_output, names, names, _mean_aggregate)


def _toxicity(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.toxicity import ToxicityScores
    from fmeval.transforms.transform_pipeline import TransformPipeline

    helper = algorithm._helper_model
    judge_batching.batch_toxicity_helper(helper, context.judges.batch_size)
    pipeline = TransformPipeline([ToxicityScores(input_key=MODEL_OUTPUT, toxicity_helper_model=helper)])
    names = list(helper.get_score_names())
    return AlgorithmScoring(pipeline, _with_output, names, names, _mean_aggregate)


def _labels(algorithm: Any, context: ScoringContext) -> list[str]:
    return list(algorithm.valid_labels) if algorithm.valid_labels else list(context.target_labels)


def _classification_accuracy(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.classification_accuracy import (
        CLASSIFICATION_ACCURACY_SCORE,
        CLASSIFIED_MODEL_OUTPUT_COLUMN_NAME,
    )

    def aggregate(dataset: FrameDataset, names: list[str]) -> tuple[list[Any], list[Any] | None]:
        scores: tuple[list[Any], list[Any] | None] = algorithm._generate_dataset_and_category_level_scores(dataset)
        return scores

    names = [CLASSIFICATION_ACCURACY_SCORE]
    return AlgorithmScoring(
        algorithm._build_pipeline(_labels(algorithm, context)),
        _with_output,
        names,
        names,
        aggregate,
        kept_columns=(TARGET_OUTPUT, CLASSIFIED_MODEL_OUTPUT_COLUMN_NAME),
    )


def _robustness(
    original: str, delta: str, build: Callable[[Any, ScoringContext], Any]
) -> Callable[[Any, ScoringContext], AlgorithmScoring]:
    def scoring(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
        import importlib

        from fmeval.transforms.transform_pipeline import TransformPipeline

        module = importlib.import_module(type(algorithm).__module__)
        names = [*getattr(module, original), *getattr(module, delta)] if delta else list(getattr(module, original))
        pipeline = TransformPipeline([_invocation(context), build(algorithm, context)])
        return AlgorithmScoring(
            pipeline, _input_only, names, names, _mean_aggregate, perturbation=algorithm.perturbation_transform
        )

    return scoring


def _with_bertscore(algorithm: Any, context: ScoringContext) -> Any:
    return algorithm._build_pipeline(context.runner, context.prompt_template, algorithm.bertscore_model)


def _classification_robustness(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.classification_accuracy_semantic_robustness import (
        CLASSIFICATION_ACCURACY_SCORE,
        DELTA_CLASSIFICATION_ACCURACY_SCORE,
    )
    from fmeval.transforms.transform_pipeline import TransformPipeline

    names = [CLASSIFICATION_ACCURACY_SCORE, DELTA_CLASSIFICATION_ACCURACY_SCORE]
    pipeline = TransformPipeline(
        [
            _invocation(context),
            algorithm._build_pipeline(context.runner, context.prompt_template, _labels(algorithm, context)),
        ]
    )
    return AlgorithmScoring(
        pipeline, _input_only, names, names, _mean_aggregate, perturbation=algorithm.perturbation_transform
    )


def _general_robustness(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.general_semantic_robustness import BERT_SCORE_DISSIMILARITY, WER_SCORE
    from fmeval.transforms.transform_pipeline import TransformPipeline

    names = [BERT_SCORE_DISSIMILARITY, WER_SCORE]
    # Each distinct prompt has one stored answer, so the model is deterministic as fmeval tests it.
    pipeline = TransformPipeline(
        [
            _invocation(context),
            algorithm._build_pipeline(context.runner, context.prompt_template, is_deterministic=True),
        ]
    )
    return AlgorithmScoring(
        pipeline, _input_only, names, names, _mean_aggregate, perturbation=algorithm.perturbation_transform
    )


def _prompt_stereotyping(algorithm: Any, context: ScoringContext) -> AlgorithmScoring:
    from fmeval.eval_algorithms.prompt_stereotyping import LOG_PROBABILITY_DIFFERENCE, PROMPT_STEREOTYPING

    return AlgorithmScoring(
        algorithm._build_pipeline(context.runner, context.prompt_template),
        _sentence_pair,
        [PROMPT_STEREOTYPING],
        [LOG_PROBABILITY_DIFFERENCE],
        _mean_aggregate,
    )


SCORINGS: Mapping[str, Callable[[Any, ScoringContext], AlgorithmScoring]] = {
    "FactualKnowledge": _factual_knowledge,
    "QAAccuracy": _qa_accuracy,
    "SummarizationAccuracy": _summarization_accuracy,
    "ClassificationAccuracy": _classification_accuracy,
    "Toxicity": _toxicity,
    "QAToxicity": _toxicity,
    "SummarizationToxicity": _toxicity,
    "QAAccuracySemanticRobustness": _robustness("ORIGINAL_SCORES", "DELTA_SCORES", _with_bertscore),
    "SummarizationAccuracySemanticRobustness": _robustness("ORIGINAL_SCORES", "DELTA_SCORES", _with_bertscore),
    "ClassificationAccuracySemanticRobustness": _classification_robustness,
    "GeneralSemanticRobustness": _general_robustness,
    "PromptStereotyping": _prompt_stereotyping,
}


def _apply(
    transforms: Sequence[Any], records: list[dict[str, Any]], judges: JudgeSettings
) -> list[dict[str, Any] | None]:
    """Every transform over the batch in order; a record whose stored answer failed drops out (None)."""
    from fmeval.transforms.batched_transform import BatchedTransform

    from step_code.stored_output_runner import FailedPromptError

    current: list[dict[str, Any] | None] = list(records)
    for transform in transforms:
        alive = {index: record for index, record in enumerate(current) if record is not None}
        if not alive:
            break
        if isinstance(transform, BatchedTransform):
            _apply_batched(transform, list(alive.values()), judges.batch_size)
            continue
        scoring_pairs = (
            judge_batching.batched_bertscore(
                transform, alive.values(), batch_size=judges.batch_size, device=judges.device
            )
            if judge_batching.is_bertscore(transform)
            else contextlib.nullcontext()
        )
        with scoring_pairs:
            for index, record in alive.items():
                try:
                    current[index] = transform(record)
                except FailedPromptError:
                    current[index] = None
    return current


def _apply_batched(transform: Any, rows: list[dict[str, Any]], size: int) -> None:
    """A batched transform (fmeval's toxicity detectors) over the rows as columns, `size` rows at a time,
    as Ray's `map_batches` hands them to it."""
    import numpy as np

    with judge_batching.inference():
        for chunk in judge_batching.chunks(rows, size):
            batch: dict[str, Any] = {key: np.asarray([row[key] for row in chunk], dtype=object) for key in chunk[0]}
            result = transform(batch)
            for key in transform.output_keys:
                for row, value in zip(chunk, np.asarray(result[key]).tolist(), strict=True):
                    row[key] = value


class _Worst:
    """The `limit` records with the worst primary score (ties: earlier records first)."""

    def __init__(self, score: Score | None, limit: int = WORST_RECORDS) -> None:
        self.score = score
        self._limit = limit
        self._heap: list[tuple[float, int, dict[str, Any]]] = []

    def offer(self, record: ScoringRecord, row: Mapping[str, Any], scores: Mapping[str, Any]) -> None:
        if self.score is None:
            return
        value = scores.get(self.score.name)
        if not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
            return
        badness = -float(value) if self.score.higher_is_better else float(value)
        entry = {
            "record_id": record.record_id,
            "index": record.index,
            "prompt": row.get("prompt", record.prompt),
            "model_input": row.get(MODEL_INPUT, record.model_input),
            "reference": row.get(TARGET_OUTPUT),
            "output": row.get(MODEL_OUTPUT),
            "category": row.get(CATEGORY),
            "score": value,
            "scores": dict(scores),
        }
        # A min-heap on (badness, -index) keeps the worst; the least bad (or latest on ties) leaves first.
        item = (badness, -record.index, entry)
        if len(self._heap) < self._limit:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def records(self) -> list[dict[str, Any]]:
        return [entry for _, _, entry in sorted(self._heap, key=lambda item: (-item[0], -item[1]))]


@dataclass
class ScoredAlgorithm:
    """The outcome of one algorithm's pass: fmeval's scores, the counts and the worst records."""

    dataset_scores: list[Any]
    category_scores: list[Any] | None
    records_scored: int
    records_unscored: int
    worst: list[dict[str, Any]]
    intervals: dict[str, Any] = field(default_factory=dict)
    # The frame aggregated above (`score_columns`); None when nothing was scored.
    columns: Any = None
    dataset_score_names: Sequence[str] = ()


class _Column:
    """One column of what fmeval aggregates, compact. A score column keeps its numbers in an array of
    doubles (None as NaN, which the means skip as they skip None) for as long as every value is a
    number; other columns (labels, categories) keep a list in which each distinct string is stored once."""

    def __init__(self, *, scores: bool) -> None:
        self._numbers: array[float] | None = array("d") if scores else None
        self._values: list[Any] = []
        self._strings: dict[str, str] = {}
        self.any_value = False

    def append(self, value: Any) -> None:
        self.any_value = self.any_value or value is not None
        if self._numbers is not None:
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                self._numbers.append(math.nan if value is None else float(value))
                return
            self._values = [None if math.isnan(number) else number for number in self._numbers]
            self._numbers = None
        self._values.append(self._strings.setdefault(value, value) if isinstance(value, str) else value)

    def series(self) -> Any:
        import numpy as np
        import pandas as pd

        if self._numbers is not None:
            return pd.Series(np.array(self._numbers, dtype=np.float64))
        return pd.Series(self._values, dtype=object)


class AlgorithmScorer:
    """Scores batches of records with one algorithm and writes fmeval's per-record rows as it goes."""

    def __init__(
        self,
        scoring: AlgorithmScoring,
        records_out: TextIO,
        primary: Score | None,
        scores_out: TextIO | None = None,
        judges: JudgeSettings = DEFAULT_JUDGES,
    ) -> None:
        self._scoring = scoring
        self._judges = judges
        self._out = records_out
        # fmeval's rows carry no record id; the select step pairs candidates' scores by it.
        self._scores_out = scores_out
        self._seeded = RecordSeededPerturbation(scoring.perturbation) if scoring.perturbation is not None else None
        self._transforms = [
            self._seeded if self._seeded is not None and transform is scoring.perturbation else transform
            for transform in scoring.pipeline.transforms
        ]
        self._columns = {name: _Column(scores=True) for name in scoring.dataset_scores}
        for name in (*scoring.kept_columns, CATEGORY):
            self._columns.setdefault(name, _Column(scores=False))
        self._worst = _Worst(primary)
        self.scored = 0
        self.unscored = 0

    def score_batch(self, batch: Sequence[ScoringRecord]) -> None:
        from fmeval.eval_algorithms.util import EvalOutputRecord

        inputs: list[dict[str, Any]] = []
        sources: list[ScoringRecord] = []
        for record in batch:
            row = self._scoring.input_of(record)
            if row is None:
                self.unscored += 1
                continue
            if self._seeded is not None:
                row[RECORD_ID_KEY] = record.record_id
            inputs.append(row)
            sources.append(record)
        for record, result in zip(sources, _apply(self._transforms, inputs, self._judges), strict=True):
            if result is None:
                self.unscored += 1
                continue
            self.scored += 1
            for name, column in self._columns.items():
                column.append(result.get(name))
            saved = EvalOutputRecord.from_row(result, self._scoring.record_scores)
            self._out.write(json.dumps(saved.to_dict(), ensure_ascii=False) + "\n")
            if self._scores_out is not None:
                keyed = {name: _plain(result.get(name)) for name in self._scoring.dataset_scores}
                self._scores_out.write(json.dumps({"record_id": record.record_id, "scores": keyed}) + "\n")
            self._worst.offer(record, result, {score.name: score.value for score in saved.scores})

    def finish(self) -> ScoredAlgorithm:
        import pandas as pd

        # fmeval aggregates per category only when the dataset has a category column.
        columns = {
            name: column.series() for name, column in self._columns.items() if name != CATEGORY or column.any_value
        }
        frame = pd.DataFrame(columns)
        dataset_scores: list[Any] = []
        category_scores: list[Any] | None = None
        if self.scored > 0:
            dataset_scores, category_scores = self._scoring.aggregate(FrameDataset(frame), self._scoring.dataset_scores)
        return ScoredAlgorithm(
            intervals=_mean_intervals(frame, self._scoring.dataset_scores, dataset_scores),
            dataset_scores=[_finite(score) for score in dataset_scores],
            category_scores=[
                type(category)(name=category.name, scores=[_finite(score) for score in category.scores])
                for category in category_scores or []
            ]
            or None,
            records_scored=self.scored,
            records_unscored=self.unscored,
            worst=self._worst.records(),
            columns=frame if self.scored > 0 else None,
            dataset_score_names=self._scoring.dataset_scores,
        )


def _plain(value: Any) -> float | None:
    """A record's score as JSON: a number, or None where fmeval gave none (booleans count as 0/1)."""
    if value is None or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _mean_intervals(frame: Any, names: Sequence[str], dataset_scores: Sequence[Any]) -> dict[str, Any]:
    """The interval of each dataset score that is the mean of its record scores (fmeval aggregates most
    by mean; one it aggregates otherwise, e.g. balanced accuracy, gets none)."""
    from step_code.uncertainty import mean_interval

    values = {score.name: score.value for score in dataset_scores}
    intervals: dict[str, Any] = {}
    for name in names:
        if name not in frame.columns or values.get(name) is None:
            continue
        interval = mean_interval([_plain(value) for value in frame[name].tolist()])
        if interval.value is not None and math.isclose(interval.value, float(values[name]), abs_tol=1e-9):
            intervals[name] = interval
    return intervals


def _finite(score: Any) -> Any:
    """A mean over no value is NaN in pandas and null in Ray; reported as None, as Ray would."""
    value = score.value
    if isinstance(value, float) and math.isnan(value):
        return type(score)(name=score.name, value=None)
    if value is not None and not isinstance(value, bool):
        return type(score)(name=score.name, value=float(value))
    return score


def open_records(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")
