"""Checks the evaluate step makes before calling a model, and the pure parts of scoring."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from step_code import scoring
from step_code.contract import algorithms as algorithm_table
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
        ({"algorithm": "GeneralSemanticRobustness"}, "re-invokes the model on perturbed prompts"),
        ({"algorithm": "PromptStereotyping"}, "PromptStereotyping is not supported"),
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


def data_with(records: list[dict[str, Any]]) -> scoring.ScoringData:
    return scoring.ScoringData(
        path=Path("unused.jsonl"),
        record_count=len(records),
        dataset_name="d",
        with_category=False,
        records_failed=0,
        prompt_template="$model_input",
        records=records,
    )


def test_worst_records_are_matched_back_and_ordered_by_direction() -> None:
    records: list[dict[str, Any]] = [
        {
            "record_id": f"r{i}",
            "index": i,
            "prompt": f"P: q{i % 3}",
            "model_input": f"q{i % 3}",
            "target_output": "t",
            "model_output": f"o{i % 3}",
        }
        for i in range(6)
    ]
    # fmeval reorders rows and records equal rows twice; values depend on the row only.
    saved = [
        {
            "model_input": r["model_input"],
            "target_output": "t",
            "model_output": r["model_output"],
            "scores": [{"name": "toxicity", "value": int(r["model_input"][1]) / 10}, {"name": "other", "value": 1.0}],
        }
        for r in reversed(records)
    ]
    lower_better = algorithm_table.Score("toxicity", higher_is_better=False)
    worst = scoring.worst_records(saved, data_with(records), lower_better, limit=3)
    assert [w["score"] for w in worst] == [0.2, 0.2, 0.1]
    assert sorted(w["record_id"] for w in worst[:2]) == ["r2", "r5"]
    assert worst[0]["prompt"] == "P: q2" and worst[0]["scores"] == {"toxicity": 0.2, "other": 1.0}
    higher_better = algorithm_table.Score("toxicity", higher_is_better=True)
    assert [w["score"] for w in scoring.worst_records(saved, data_with(records), higher_better, limit=2)] == [0.0, 0.0]


def test_rows_without_the_score_are_not_worst_records() -> None:
    saved = [{"model_input": "q", "target_output": "t", "model_output": "o", "scores": [{"name": "s", "error": "x"}]}]
    assert scoring.worst_records(saved, data_with([]), algorithm_table.Score("s", True)) == []


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


class ShortAlgorithm:
    """Scores one record fewer than asked, the way a silently sampled evaluation would."""

    def __init__(self, config: object) -> None:
        self.config = config

    def evaluate(self, **kwargs: Any) -> list[Any]:
        from fmeval.eval_algorithms import EvalOutput, EvalScore

        path = Path(kwargs["save_strategy"]._file_path)
        path.write_text('{"model_input": "q", "scores": [{"name": "factual_knowledge", "value": 1.0}]}\n')
        return [EvalOutput(eval_name="factual_knowledge", dataset_name="d", dataset_scores=[EvalScore("x", 1.0)])]


class BrokenAlgorithm(ShortAlgorithm):
    def evaluate(self, **kwargs: Any) -> list[Any]:
        raise RuntimeError("worker died\nwith a long traceback")


def test_a_failing_or_short_algorithm_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    (factual,) = plan({"algorithm": "FactualKnowledge"})
    data = data_with([{"model_input": "q"}, {"model_input": "r"}])
    broken = dataclasses.replace(factual, algorithm_class=BrokenAlgorithm)
    short = dataclasses.replace(factual, algorithm_class=ShortAlgorithm)
    results = scoring.score_all([broken, short], data, tmp_path, model="m")
    assert [r.eval_name for r in results] == ["factual_knowledge", "factual_knowledge_2"]
    assert results[0].error == "RuntimeError: worker died"
    assert results[1].error == "ScoringError: algorithms[0] (FactualKnowledge): fmeval scored 1 of 2 records"
    for result in results:
        assert result.scores == {}
        assert "failed" in (tmp_path / result.report_path).read_text(encoding="utf-8")
        assert (tmp_path / result.output_path).is_file()
