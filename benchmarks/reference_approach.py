"""The baseline: the reference AWS sample's way of evaluating, one fmeval `evaluate()` per algorithm.

The reference sample built fmeval's JumpStartModelRunner on its SageMaker endpoint and called each
algorithm's `evaluate(model=runner, dataset_config=..., prompt_template=..., save=True)`, so every
algorithm invoked the endpoint for every prompt again, through fmeval's own invocation (one Ray actor
per CPU but one, each calling the model one prompt at a time). Here the endpoint is the local model
server, reached by `HttpModelRunner`: the same fmeval JSON composer and JMESPath extractor a JumpStart
runner uses, over plain HTTP.

Ray runs with the same settings as in our evaluate step (`fmeval_runtime.ray_session`), so the
comparison measures the two approaches, not two Ray configurations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from fmeval.model_runners.model_runner import ModelRunner

from step_code import fmeval_runtime
from step_code.scoring import PlannedAlgorithm

REQUEST_TIMEOUT_SECONDS = 60.0


class HttpModelRunner(ModelRunner):
    """An fmeval ModelRunner that POSTs the composed request to an HTTP endpoint and returns `(output, None)`."""

    def __init__(self, url: str, *, content_template: str, output: str) -> None:
        super().__init__(content_template=content_template, output=output)
        self.url = url
        self._session: requests.Session | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray ships the runner to its actors; each opens its own keep-alive connection.
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    def predict(self, prompt: str) -> tuple[str | None, float | None]:
        if self._session is None:
            self._session = requests.Session()
        response = self._session.post(self.url, json=self._composer.compose(prompt), timeout=REQUEST_TIMEOUT_SECONDS)
        response.raise_for_status()
        return self._extractor.extract_output(response.json(), 1), None


@dataclass(frozen=True)
class ReferenceRun:
    eval_name: str
    scores: dict[str, float | None]
    wall_seconds: float
    endpoint_calls: int


def _data_config(dataset_uri: Path, dataset_name: str, input_key: str, target_key: str, category_key: str) -> Any:
    from fmeval.data_loaders.data_config import DataConfig

    return DataConfig(
        dataset_name=dataset_name,
        dataset_uri=str(dataset_uri),
        dataset_mime_type="application/jsonlines",
        model_input_location=input_key,
        target_output_location=target_key,
        category_location=category_key,
    )


def _evaluate_without_bertscore(
    planned: PlannedAlgorithm, runner: ModelRunner, data_config: Any, prompt_template: str, records: int
) -> Any:
    """QAAccuracy's `evaluate()` minus its BERTScore transform, whose model cannot be downloaded here.

    It is what our evaluate step runs when BERTScore is missing and EVALOPS_SKIP_MISSING_JUDGE_SCORES=1:
    fmeval's QAAccuracyScores transform in fmeval's `evaluate_dataset`, with the model invoked by fmeval.
    """
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
        dataset=get_dataset(data_config, records),
        pipeline=pipeline,
        dataset_name=data_config.dataset_name,
        eval_name=planned.spec.eval_name,
        metric_names=list(QA_ACCURACY_SCORE_NAMES),
        eval_results_path=get_eval_results_path(),
        model=runner,
        prompt_template=prompt_template,
        agg_method=MEAN,
        save=True,
    )


def run_reference(
    algorithms: Sequence[PlannedAlgorithm],
    runner: HttpModelRunner,
    *,
    dataset_uri: Path,
    dataset_name: str,
    keys: tuple[str, str, str],
    prompt_template: str,
    records: int,
    count_calls: Callable[[], int],
) -> list[ReferenceRun]:
    """One fmeval `evaluate()` per algorithm, each invoking the model on every record; fmeval saves to
    EVAL_RESULTS_PATH as the reference did. `count_calls()`: the endpoint's request count so far."""
    data_config = _data_config(dataset_uri, dataset_name, *keys)
    runs: list[ReferenceRun] = []
    with fmeval_runtime.ray_session():
        for planned in algorithms:
            started, calls_before = time.perf_counter(), count_calls()
            if planned.omitted_judges:
                output = _evaluate_without_bertscore(planned, runner, data_config, prompt_template, records)
            else:
                outputs = planned.algorithm_class(planned.config_object).evaluate(
                    model=runner,
                    dataset_config=data_config,
                    prompt_template=prompt_template,
                    num_records=records,
                    save=True,
                )
                output = outputs[0]
            runs.append(
                ReferenceRun(
                    eval_name=output.eval_name,
                    scores={score.name: score.value for score in output.dataset_scores or []},
                    wall_seconds=time.perf_counter() - started,
                    endpoint_calls=count_calls() - calls_before,
                )
            )
    return runs
