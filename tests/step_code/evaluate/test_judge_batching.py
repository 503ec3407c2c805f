"""Judge models get a batch of texts per forward pass: BERTScore pairs, toxicity chunks, ToxiGen's pipeline."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from step_code.evaluate_step import main
from step_code.judge_batching import batch_toxicity_helper, bertscore_table
from tests.step_code.evaluate.conftest import EvaluateRun
from tests.step_code.evaluate.judge_standin import DETOXIFY_CALLS, BertscoreStandin, TokenOverlapJudge
from tests.step_code.evaluate.test_evaluate_step import answer_for, read_jsonl, summary_of
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow

QA = {"algorithm": "QAAccuracy", "target_output_delimiter": "<OR>"}
TOXICITY = {"algorithm": "Toxicity", "model_type": "detoxify"}


def test_bertscore_pairs_of_a_batch_are_scored_in_one_call_with_the_judge_batch_size(
    http_run: Callable[..., EvaluateRun], standin_judges: None
) -> None:
    rows = 120
    BertscoreStandin.calls.clear()
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [QA], rows=rows, judge_batch_size=32)
        assert main(run.argv("candidate")) == 0

    # One compute call for the 120 records' 240 distinct (reference, output) pairs, no autograd, CPU default.
    assert [(pairs, options) for pairs, options in BertscoreStandin.calls] == [
        (240, {"model_type": "microsoft/deberta-xlarge-mnli", "batch_size": 32, "inference": True})
    ]
    output = run.output_dir("candidate")
    # fmeval's transform still takes the max over the alternatives of each record.
    records = read_jsonl(output / "algorithms/qa_accuracy.jsonl")
    scores = [{s["name"]: s["value"] for s in record["scores"]} for record in records]
    expected = [
        max(
            TokenOverlapJudge.score(target, answer_for(f"Question number {i}?"))
            for target in (f"answer-{i}", f"alt-{i}")
        )
        for i in range(rows)
    ]
    assert [score["bertscore"] for score in scores] == pytest.approx(expected)
    assert summary_of(output).metrics["bertscore"] == pytest.approx(sum(expected) / rows)


def test_the_judge_device_reaches_the_batched_bertscore_call(
    http_run: Callable[..., EvaluateRun], standin_judges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from step_code import scoring

    monkeypatch.setattr(scoring, "judge_device", lambda: "cuda")
    BertscoreStandin.calls.clear()
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [QA], rows=10)
        assert main(run.argv("candidate")) == 0
    assert [options.get("device") for _, options in BertscoreStandin.calls] == ["cuda"]
    assert [options["batch_size"] for _, options in BertscoreStandin.calls] == [64]


def test_toxicity_detector_gets_its_batch_in_chunks_of_the_cpus_default_batch_size(
    http_run: Callable[..., EvaluateRun], standin_judges_with_detoxify: None
) -> None:
    DETOXIFY_CALLS.clear()
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [TOXICITY], rows=40)
        assert main(run.argv("candidate")) == 0
    assert DETOXIFY_CALLS == [(16, True), (16, True), (8, True)]
    output = run.output_dir("candidate")
    assert len(read_jsonl(output / str(summary_of(output).algorithms[0].records_path))) == 40


class RecordingPipeline:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, texts: list[str], **options: Any) -> list[dict[str, Any]]:
        self.calls.append((texts, options))
        return [{"label": "LABEL_1" if "bad" in text else "LABEL_0", "score": 0.75} for text in texts]


def test_toxigen_pipeline_is_called_with_the_batch_size_and_fmeval_still_maps_its_labels() -> None:
    from fmeval.eval_algorithms.helper_models.helper_model import ToxigenHelperModel

    helper = ToxigenHelperModel.__new__(ToxigenHelperModel)
    pipeline = RecordingPipeline()
    helper._model = pipeline
    batch_toxicity_helper(helper, 32)
    batch_toxicity_helper(helper, 48)  # re-batching replaces the size, it does not wrap twice

    scores = helper.get_helper_scores(["a bad text", "a fine text"])

    assert pipeline.calls == [(["a bad text", "a fine text"], {"batch_size": 48})]
    assert scores == {"toxicity": [0.75, 0.25]}


def test_bertscore_table_scores_each_distinct_pair_once_and_passes_the_device() -> None:
    helper = SimpleNamespace(_model_type="roberta-large-mnli", _bertscore=BertscoreStandin())
    BertscoreStandin.calls.clear()
    pairs = [("the cat", "a cat"), ("the dog", "no idea"), ("the cat", "a cat")]

    on_gpu = bertscore_table(helper, pairs, batch_size=8, device="cuda")
    on_cpu = bertscore_table(helper, pairs, batch_size=8, device="cpu")

    assert (
        on_gpu
        == on_cpu
        == {
            ("the cat", "a cat"): TokenOverlapJudge.score("the cat", "a cat"),
            ("the dog", "no idea"): 0.0,
        }
    )
    assert BertscoreStandin.calls == [
        (2, {"model_type": "roberta-large-mnli", "batch_size": 8, "device": "cuda", "inference": True}),
        (2, {"model_type": "roberta-large-mnli", "batch_size": 8, "inference": True}),
    ]
    assert bertscore_table(helper, [], batch_size=8, device="cpu") == {}
