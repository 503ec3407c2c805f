"""Checks the evaluate step makes before calling a model, and the pure parts of scoring."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from step_code import record_scoring, scoring
from step_code.contract.config import AlgorithmConfig
from step_code.contract.results import AlgorithmResult


def plan(*entries: dict[str, Any], skip: bool = False) -> list[Any]:
    return scoring.plan_scoring([AlgorithmConfig.model_validate(e) for e in entries], skip_missing_judges=skip)


def test_offline_algorithms_plan_with_their_fmeval_config() -> None:
    planned = plan(
        {"algorithm": "FactualKnowledge", "target_output_delimiter": "||"},
        {"algorithm": "ClassificationAccuracy", "valid_labels": ["yes", "no"]},
    )
    assert [p.spec.eval_name for p in planned] == ["factual_knowledge", "classification_accuracy"]
    assert planned[0].config_object.target_output_delimiter == "||"
    assert planned[1].config_object.valid_labels == ["yes", "no"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"algorithm": "QAAccuracy"}, "algorithms[0] (QAAccuracy) needs the evaluate metric script 'bertscore'"),
        (
            {"algorithm": "SummarizationAccuracy", "model_type_for_bertscore": "roberta-large-mnli"},
            "the BERTScore model roberta-large-mnli",
        ),
        ({"algorithm": "Toxicity"}, "the Detoxify checkpoint toxic_debiased-c7548aa0.ckpt"),
        ({"algorithm": "Toxicity", "model_type": "toxigen"}, "the ToxiGen model tomh/toxigen_roberta"),
        ({"algorithm": "GeneralSemanticRobustness"}, "the evaluate metric script 'bertscore'"),
        ({"algorithm": "FactualKnowledge", "logical_operator": "XOR"}, "algorithms[0] (FactualKnowledge): "),
        ({"algorithm": "FactualKnowledge", "delimiter": "<OR>"}, "unknown field(s) ['delimiter']"),
    ],
)
def test_unusable_algorithms_fail_in_one_line(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(scoring.ScoringError) as caught:
        plan(entry)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_only_qa_accuracy_may_leave_out_a_missing_bertscore() -> None:
    (qa,) = plan({"algorithm": "QAAccuracy"}, skip=True)
    assert qa.omitted_judges == ("bertscore",)
    with pytest.raises(scoring.ScoringError, match="SummarizationAccuracy"):
        plan({"algorithm": "SummarizationAccuracy"}, skip=True)


def test_a_judge_hook_replaces_the_judge_download(standin_judges: None) -> None:
    (qa,) = plan({"algorithm": "QAAccuracy"})
    assert qa.omitted_judges == ()


def records(count: int, *, failed: tuple[int, ...] = ()) -> list[record_scoring.ScoringRecord]:
    return [
        record_scoring.ScoringRecord(
            record_id=f"r{i}",
            index=i,
            prompt=f"P: q{i}",
            model_input=f"q{i}",
            target_output=f"t{i % 3}",
            category=None,
            model_output=None if i in failed else ("t0" if i % 2 else f"o{i}"),
        )
        for i in range(count)
    ]


def inputs(batch: list[record_scoring.ScoringRecord], *, failed: int = 0) -> scoring.ScoringInputs:
    return scoring.ScoringInputs(
        batches=lambda: [batch],
        answers={},
        dataset_name="d",
        prompt_template="P: $model_input",
        target_labels=sorted({r.target_output for r in batch}),
        records_failed=failed,
    )


def test_worst_records_are_the_lowest_scores_in_dataset_order_on_ties(tmp_path: Path) -> None:
    (factual,) = plan({"algorithm": "FactualKnowledge"})
    (result,) = scoring.score_all([factual], inputs(records(8)), tmp_path, model="m")
    worst = json.loads((tmp_path / "algorithms/factual_knowledge_worst_records.json").read_text())
    assert worst["score"] == "factual_knowledge"
    # Even records answer o<i>, which never contains their reference; odd ones answer t0 (r3's reference).
    misses = [f"r{i}" for i in range(8) if i != 3]
    assert [w["record_id"] for w in worst["records"]] == [*misses, "r3"]
    assert worst["records"][0] == {
        "record_id": "r0",
        "index": 0,
        "prompt": "P: q0",
        "model_input": "q0",
        "reference": "t0",
        "output": "o0",
        "category": None,
        "score": 0.0,
        "scores": {"factual_knowledge": 0.0, "factual_knowledge_quasi_exact": 0.0},
    }
    assert result.scores["factual_knowledge"] == pytest.approx((8 - len(misses)) / 8)


def test_records_without_an_output_are_not_scored(tmp_path: Path) -> None:
    (factual,) = plan({"algorithm": "FactualKnowledge"})
    (result,) = scoring.score_all([factual], inputs(records(6, failed=(0, 3)), failed=2), tmp_path, model="m")
    saved = (tmp_path / str(result.records_path)).read_text().splitlines()
    assert [json.loads(line)["model_input"] for line in saved] == ["q1", "q2", "q4", "q5"]


def result(eval_name: str, **scores: float) -> AlgorithmResult:
    return AlgorithmResult(
        algorithm=eval_name, eval_name=eval_name, scores=dict(scores), output_path="a", report_path="b"
    )


def test_flat_metrics_qualify_only_shared_score_names() -> None:
    metrics = scoring.flat_metrics(
        [result("qa_accuracy", f1_score=0.5, bertscore=0.7), result("summarization_accuracy", rouge=0.2, bertscore=0.9)]
    )
    assert metrics == {
        "f1_score": 0.5,
        "qa_accuracy.bertscore": 0.7,
        "rouge": 0.2,
        "summarization_accuracy.bertscore": 0.9,
    }


class BrokenAlgorithm:
    """An algorithm whose transform raises on the first record, as a broken fmeval metric would."""

    def __init__(self, config: object) -> None:
        from fmeval.transforms.transform_pipeline import TransformPipeline

        self.pipeline = TransformPipeline([Explode()])


def explode_transform() -> Any:
    from fmeval.transforms.transform import Transform

    class _Explode(Transform):
        def __init__(self) -> None:
            super().__init__()
            self.register_input_output_keys(["model_output"], ["factual_knowledge"])

        def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("metric died\nwith a long traceback")

    return _Explode()


def Explode() -> Any:
    return explode_transform()


def test_a_failing_algorithm_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    (factual,) = plan({"algorithm": "FactualKnowledge"})
    broken = dataclasses.replace(factual, algorithm_class=BrokenAlgorithm)
    results = scoring.score_all([broken, factual], inputs(records(4)), tmp_path, model="m")
    assert [r.eval_name for r in results] == ["factual_knowledge", "factual_knowledge_2"]
    assert results[0].error == "RuntimeError: metric died"
    assert results[0].scores == {}
    assert "failed" in (tmp_path / results[0].report_path).read_text(encoding="utf-8")
    assert not (tmp_path / "algorithms/factual_knowledge.jsonl").exists()
    assert results[1].error is None and results[1].scores["factual_knowledge"] == pytest.approx(0.25)


def test_an_algorithm_with_nothing_to_score_is_reported(tmp_path: Path) -> None:
    (factual,) = plan({"algorithm": "FactualKnowledge"})
    (result,) = scoring.score_all([factual], inputs(records(2, failed=(0, 1)), failed=2), tmp_path, model="m")
    assert (
        result.error
        == "ScoringError: algorithms[0] (FactualKnowledge): no record could be scored (2 without an answer)"
    )
    assert (tmp_path / result.output_path).is_file()


def test_a_prompt_outside_the_plan_fails_the_algorithm_loudly(tmp_path: Path) -> None:
    (robustness,) = plan({"algorithm": "ClassificationAccuracySemanticRobustness", "num_perturbations": 2})
    (result,) = scoring.score_all([robustness], inputs(records(2)), tmp_path, model="m")
    assert result.error is not None
    assert result.error.startswith("UnplannedPromptError: fmeval asked for a prompt the invocation plan does not")
