"""The evaluate step end to end: a local model server, real fmeval algorithms in-process, the files it writes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from step_code.contract.config import Config
from step_code.contract.results import EvaluationSummary
from step_code.evaluate_step import main
from step_code.scoring import SKIP_JUDGE_SCORES_ENV
from tests.step_code.evaluate.conftest import EvaluateRun, make_run
from tests.step_code.evaluate.judge_standin import TokenOverlapJudge
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow

FACTUAL = {"algorithm": "FactualKnowledge", "target_output_delimiter": "<OR>"}
QA = {"algorithm": "QAAccuracy", "target_output_delimiter": "<OR>"}
CLASSIFICATION = {"algorithm": "ClassificationAccuracy"}


class RecordingProgress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        self.calls.append((model, invoked, cache_hits, failed, total))


def answer_for(prompt: str) -> str:
    """Question i gets its exact reference (i % 3 == 0), an answer containing the alternative (1), or a miss (2)."""
    index = int(prompt.removeprefix("Question number ").removesuffix("?"))
    return [f"answer-{index}", f"It is alt-{index}.", "no idea"][index % 3]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summary_of(output: Path) -> EvaluationSummary:
    return EvaluationSummary.model_validate_json((output / "summary.json").read_text(encoding="utf-8"))


def expected_factual_knowledge(rows: int) -> float:
    return sum(1 for i in range(rows) if i % 3 != 2) / rows


def test_model_calls_do_not_grow_with_algorithms_and_every_record_is_scored(
    http_run: Callable[..., EvaluateRun], standin_judges: None
) -> None:
    rows = 120  # above fmeval's default sample of 100 records
    with ModelServer(answers=answer_for) as server:
        one = http_run(server.url, [FACTUAL], rows=rows)
        assert main(one.argv("candidate")) == 0
        calls_for_one = server.requests_total
        server.reset_counters()
        three = http_run(server.url, [FACTUAL, QA, CLASSIFICATION], rows=rows)
        assert main(three.argv("candidate")) == 0
        calls_for_three = server.requests_total

    assert calls_for_one == calls_for_three == rows
    output = three.output_dir("candidate")
    summary = summary_of(output)
    assert (summary.model_calls, summary.records_total, summary.records_failed) == (rows, rows, 0)
    assert [a.eval_name for a in summary.algorithms] == ["factual_knowledge", "qa_accuracy", "classification_accuracy"]
    assert all(a.error is None for a in summary.algorithms)
    for result in summary.algorithms:
        assert len(read_jsonl(output / str(result.records_path))) == rows
        for path in (result.output_path, result.report_path):
            assert (output / path).is_file()
        worst = json.loads((output / f"algorithms/{result.eval_name}_worst_records.json").read_text())
        assert len(worst["records"]) == 10

    assert summary.metrics["factual_knowledge"] == pytest.approx(expected_factual_knowledge(rows))
    assert summary.metrics["exact_match_score"] == pytest.approx(sum(1 for i in range(rows) if i % 3 == 0) / rows)
    assert set(summary.algorithms[0].category_scores) == {"even", "odd"}
    # The stand-in judge scored every record: its exact value for every record, max over the alternatives.
    expected_bertscore = [
        max(
            TokenOverlapJudge.score(target, answer_for(f"Question number {i}?"))
            for target in (f"answer-{i}", f"alt-{i}")
        )
        for i in range(rows)
    ]
    assert summary.metrics["bertscore"] == pytest.approx(sum(expected_bertscore) / rows)
    assert summary.latency.p50_ms is not None and summary.throughput_per_second is not None
    assert summary.cost.basis == "none"

    worst = json.loads((output / "algorithms/factual_knowledge_worst_records.json").read_text())
    assert worst["score"] == "factual_knowledge"
    assert {r["output"] for r in worst["records"]} == {"no idea"}
    assert all(r["record_id"] and r["prompt"].startswith("Question number") for r in worst["records"])
    eval_output = json.loads((output / "algorithms/qa_accuracy.json").read_text())
    assert eval_output["output_path"] == "algorithms/qa_accuracy.jsonl"
    assert {s["name"] for s in eval_output["dataset_scores"]} >= {"f1_score", "bertscore"}
    page = (output / "algorithms/factual_knowledge.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "FactualKnowledge — candidate" in page and "no idea" in page
    assert "<th>factual_knowledge (higher is better)</th>" in page and "<th>even</th>" in page


def test_failed_records_are_kept_but_not_scored(
    http_run: Callable[..., EvaluateRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 12
    monkeypatch.setenv(SKIP_JUDGE_SCORES_ENV, "1")
    with ModelServer(answers=answer_for) as server:
        server.fail_prompt("Question number 0?", "bad_request")
        server.fail_prompt("Question number 1?", "bad_request")
        run = http_run(server.url, [FACTUAL, QA], rows=rows, category=False)
        progress = RecordingProgress()
        assert main(run.argv("candidate"), progress=progress) == 0

    output = run.output_dir("candidate")
    summary = summary_of(output)
    assert (summary.records_total, summary.records_succeeded, summary.records_failed) == (rows, rows - 2, 2)
    records = read_jsonl(output / "records.jsonl")
    failed = [r for r in records if r["error"] is not None]
    assert [r["model_input"] for r in failed] == ["Question number 0?", "Question number 1?"]
    assert all(r["model_output"] is None for r in failed)
    scored_inputs = {r["model_input"] for r in read_jsonl(output / "algorithms/factual_knowledge.jsonl")}
    assert len(scored_inputs) == rows - 2 and "Question number 0?" not in scored_inputs
    kept = [i for i in range(2, rows)]
    assert summary.metrics["factual_knowledge"] == pytest.approx(sum(1 for i in kept if i % 3 != 2) / len(kept))
    # BERTScore's model is not available offline and the user allowed leaving it out: word-overlap scores only.
    qa = summary.algorithms[1]
    assert "bertscore" not in qa.scores
    assert qa.scores["exact_match_score"] == pytest.approx(sum(1 for i in kept if i % 3 == 0) / len(kept))
    assert progress.calls[-1] == ("candidate", rows, 0, 2, rows)
    assert "bertscore was not computed" in (output / "algorithms/qa_accuracy.html").read_text(encoding="utf-8")


def test_missing_judge_model_fails_in_one_line_before_any_model_call(
    http_run: Callable[..., EvaluateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [FACTUAL, QA], rows=3)
        assert main(run.argv("candidate")) == 1
        assert server.requests_total == 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "algorithms[1] (QAAccuracy) needs" in error
    assert "microsoft/deberta-xlarge-mnli" in error and SKIP_JUDGE_SCORES_ENV in error
    assert not (run.output_dir("candidate") / "summary.json").exists()


class ScoringStartedGate:
    """Holds a step at the end of its invocation until the other step has started scoring."""

    def __init__(self, other_algorithms_dir: Path) -> None:
        self._other = other_algorithms_dir

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        deadline = time.monotonic() + 300
        while invoked + cache_hits == total and not self._other.exists():
            assert time.monotonic() < deadline, "the other evaluate step never started scoring"
            time.sleep(0.05)


def test_two_evaluate_steps_in_threads_of_one_process(tmp_path: Path, repo_root: Path) -> None:
    """The first step starts Ray, the second joins while the first scores, then scores after the first's
    thread has ended (Ray's processes die with the thread that started them, so this needs care)."""
    config = Config.model_validate(yaml.safe_load((repo_root / "configs/sample.yaml").read_text(encoding="utf-8")))
    run = make_run(tmp_path, config, repo_root / "prompt_catalog")
    first, second = models = ["llama3-8b-instruct", "falcon-7b-instruct"]
    codes: dict[str, int] = {}

    def evaluate(model: str, progress: Any) -> None:
        codes[model] = main(run.argv(model), progress=progress)

    threads = [
        threading.Thread(target=evaluate, args=(first, None)),
        threading.Thread(target=evaluate, args=(second, ScoringStartedGate(run.output_dir(first) / "algorithms"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert codes == dict.fromkeys(models, 0)

    from fmeval.eval_algorithms.factual_knowledge import FactualKnowledge, FactualKnowledgeConfig

    judge = FactualKnowledge(FactualKnowledgeConfig(target_output_delimiter="<OR>"))
    for model in models:
        output = run.output_dir(model)
        records = read_jsonl(output / "records.jsonl")
        expected = sum(judge.evaluate_sample(r["target_output"], r["model_output"])[0].value for r in records) / len(
            records
        )
        summary = summary_of(output)
        assert summary.records_total == len(records) == 40
        assert summary.metrics["factual_knowledge"] == pytest.approx(expected)
        assert summary.model_calls == 0 and summary.cost.basis == "none"
        assert summary.artifact.model_id == config.model(model).model_id
