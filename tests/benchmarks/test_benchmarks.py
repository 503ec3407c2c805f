"""The benchmarks run end to end with a few prompts: what they print, and the call counts they must see.

Timings are never checked; the call counts are exact because they are what the benchmarks demonstrate.
"""

from __future__ import annotations

import re

import pytest

from benchmarks import eval_bench, workload
from benchmarks.__main__ import main, parse_args, sizes_of
from benchmarks.reference_approach import ReferenceRun
from step_code.contract.results import AlgorithmResult

PROMPTS = 20
EVAL_NAMES = ["factual_knowledge", "qa_accuracy", "classification_accuracy"]


def table_rows(printed: str) -> dict[str, list[str]]:
    """Rows of the printed tables by their first cell (cells are separated by two or more spaces)."""
    rows = {}
    for line in printed.splitlines():
        cells = re.split(r" {2,}", line.strip())
        if len(cells) > 1 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def algorithm_result(scores: dict[str, float | None], error: str | None = None) -> AlgorithmResult:
    return AlgorithmResult(
        algorithm="FactualKnowledge",
        eval_name="factual_knowledge",
        scores=scores,
        output_path="algorithms/factual_knowledge.json",
        report_path="algorithms/factual_knowledge.html",
        error=error,
    )


def reference_run(scores: dict[str, float | None]) -> ReferenceRun:
    return ReferenceRun(eval_name="factual_knowledge", scores=scores, wall_seconds=1.0, endpoint_calls=PROMPTS)


def test_score_comparison_accepts_rounding_and_rejects_any_real_difference() -> None:
    same = eval_bench.compare_scores(
        reference_run({"a": 0.5, "b": None}), algorithm_result({"a": 0.5 + 1e-12, "b": None})
    )
    assert same[0] == 2 and same[2] is None
    assert eval_bench.compare_scores(reference_run({"a": 0.5}), algorithm_result({"a": 0.5001}))[2] is not None
    assert eval_bench.compare_scores(reference_run({"a": 0.5}), algorithm_result({"b": 0.5}))[2] is not None
    assert eval_bench.compare_scores(reference_run({"a": 0.5}), algorithm_result({"a": None}))[2] is not None
    assert eval_bench.compare_scores(reference_run({"a": 0.5}), algorithm_result({}, error="boom"))[2] is not None


def test_the_model_answers_every_prompt_the_same_way_and_not_always_right() -> None:
    rows = workload.catalog_rows(300)
    prompts = [workload.PROMPT_TEMPLATE.replace("$model_input", row["review"]) for row in rows]
    answers = [workload.answer(prompt) for prompt in prompts]
    assert answers == [workload.answer(prompt) for prompt in prompts]
    exact = sum(1 for row, said in zip(rows, answers, strict=True) if said == row["sentiment"])
    assert 0.3 * len(rows) < exact < 0.8 * len(rows)
    assert workload.NO_LABEL_ANSWER not in answers


def test_edits_change_exactly_the_counted_prompts() -> None:
    plain, edited = workload.catalog_rows(95), workload.catalog_rows(95, edited_every=10)
    changed = sum(1 for a, b in zip(plain, edited, strict=True) if a != b)
    assert changed == workload.edited_count(95, 10) == 10
    assert len({row["review"] for row in plain}) == 95


def test_arguments_must_be_positive_and_smoke_mode_is_small() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--prompts", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--only", "nothing"])
    assert parse_args(["--only", "eval", "--only", "cache"]).only == ["eval", "cache"]
    smoke = sizes_of(parse_args(["--smoke"]))
    assert max(n for n, _ in smoke.eval_configurations) <= 20 and max(smoke.scale_prompts) <= 100
    full = sizes_of(parse_args([]))
    assert full.eval_configurations == ((200, 2), (1000, 3))
    assert (full.scale_prompts, full.cache_prompts) == ((10_000, 100_000), 100_000)
    assert sizes_of(parse_args(["--prompts", "300"])).eval_configurations == ((300, 3),)


@pytest.mark.slow
def test_eval_benchmark_sends_each_prompt_once_and_the_reference_once_per_algorithm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = eval_bench.run(prompts=PROMPTS, latency_ms=2, concurrency=4, algorithms=3)

    assert result.problems == []
    assert (result.ours_calls, result.ours_reported_calls, result.reference_calls) == (PROMPTS, PROMPTS, 3 * PROMPTS)
    assert [a.eval_name for a in result.algorithms] == EVAL_NAMES
    assert [a.reference_calls for a in result.algorithms] == [PROMPTS] * 3
    assert [a.scores for a in result.algorithms] == [2, 5, 4]
    assert result.invocation_seconds is not None and result.invocation_seconds > 0
    assert result.after_last_answer_seconds is not None and result.after_last_answer_seconds > 0

    printed = capsys.readouterr().out
    assert printed.startswith(f"== evaluation: N={PROMPTS} prompts, 3 algorithms, endpoint latency 2 ms")
    rows = table_rows(printed)
    assert rows["approach"][0] == "endpoint calls"
    assert rows["(a) reference: fmeval evaluate() x algorithms"][0] == str(3 * PROMPTS)
    assert rows["(b) ours: evalops run --local"][0] == str(PROMPTS)
    assert rows["(b) ours: invocation phase (first to last answer)"][0] == str(PROMPTS)
    for name in EVAL_NAMES:
        assert rows[name][0] == str(PROMPTS) and rows[name][-1] == "yes"
    assert f"calls (b) = N: {PROMPTS} [met]" in printed


@pytest.mark.slow
def test_smoke_mode_checks_robustness_calls_scale_and_cache_requests(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--smoke", "--only", "robustness", "--only", "scale", "--only", "cache"])

    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "== evaluation" not in printed and "FAILED" not in printed
    rows = table_rows(printed)
    # (records) distinct prompts, endpoint calls, fmeval evaluate() calls
    distinct, calls, fmeval_calls = rows["10"][:3]
    assert calls == distinct and 10 < int(distinct) <= 10 * 6 and fmeval_calls == str(10 * 7)
    # N, endpoint calls
    assert rows["30"][0] == "30"
    # objects after, LIST, GET, PUT, DELETE, answers found
    assert rows["re-run on loose entries: load"][:6] == ["1,200", "2", "1,200", "0", "0", "1,200"]
    assert rows["first run ends: compact()"][:5] == ["1", "1", "0", "1", "2"]
    assert rows["re-run on segments: load + compact()"][:6] == ["1", "1", "1", "0", "0", "1,200"]


@pytest.mark.slow
def test_rerun_benchmark_calls_only_for_new_prompts(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--only", "rerun", "--prompts", str(PROMPTS), "--latency-ms", "2", "--concurrency", "4"])

    printed = capsys.readouterr().out
    assert status == 0, printed
    assert printed.startswith("machine: ")
    assert "== evaluation" not in printed and "== synth" not in printed and "FAILED" not in printed
    rows = table_rows(printed)
    # prompts changed, endpoint calls, expected, cache hits
    assert rows["first run, empty cache"][:4] == [str(PROMPTS), str(PROMPTS), str(PROMPTS), "0"]
    assert rows["catalog unchanged"][:4] == ["0", "0", "0", str(PROMPTS)]
    assert rows["every 10th prompt edited"][:4] == ["2", "2", "2", str(PROMPTS - 2)]


@pytest.mark.slow
def test_shard_benchmark_sends_each_prompt_once_per_k_and_merges_identical_scores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["--only", "shards", "--shard-prompts", "12"])

    printed = capsys.readouterr().out
    assert status == 0, printed
    rows = table_rows(printed)
    for shards in ("1", "2", "4"):
        # N, endpoint calls, ..., one peak RSS per shard process
        assert rows[shards][:2] == ["12", "12"]
        assert len(rows[shards][-1].split(", ")) == int(shards)
    assert "merged scores identical to K=1: yes" in printed
    # The robustness algorithm over K = 1 and 2: N, then more calls than N (its perturbed prompts), the same for both.
    assert rows["robustness K=1"][0] == rows["robustness K=2"][0] == "12"
    assert int(rows["robustness K=1"][1]) > 12 and rows["robustness K=2"][1] == rows["robustness K=1"][1]
    assert "robustness scores (dataset, category, per record) and calls identical to K=1: yes" in printed
    assert "Projection: 1,000,000 prompts x 10 models on SageMaker" in printed
