"""Shard files, shard jobs and their merge at the step level: any share of shards per instance, the merged
evaluation equal to the unsharded one (robustness algorithms included: each record's perturbations are its
own), and a missing shard result failing the merge with its name."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from step_code import evaluate_shards, merge_shards
from step_code.contract.results import EvaluationSummary
from step_code.evaluate_step import main as evaluate_main
from step_code.shard_files import write_shards
from tests.step_code.evaluate.conftest import EvaluateRun
from tests.step_code.evaluate.test_evaluate_step import FACTUAL, answer_for
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow


def test_shard_files_are_contiguous_ranges_and_too_many_shards_fail(tmp_path: Path) -> None:
    processed = b"".join(b'{"n": %d}\n' % i for i in range(7))
    files = write_shards(processed, str(tmp_path / "shards-3"))
    assert [Path(f).name for f in files] == [f"shard-0000{i}-of-00003.jsonl" for i in range(3)]
    contents = [Path(f).read_bytes() for f in files]
    assert b"".join(contents) == processed
    assert [c.count(b"\n") for c in contents] == [2, 2, 3]
    with pytest.raises(Exception, match=r"^shards: 8 shards for 7 processed records; give at most 7 shards$"):
        write_shards(processed, str(tmp_path / "shards-8"))


def _shard_argv(run: EvaluateRun, shards_dir: Path, output: Path, cache: str = "cache") -> list[str]:
    argv = run.argv("candidate", cache=cache, output=output)
    position = argv.index("--dataset-dir")
    return [*argv[:position], "--shards-dir", str(shards_dir), *argv[position + 2 :]]


def _merge_argv(run: EvaluateRun, results: Path, output: Path) -> list[str]:
    return [
        "--config",
        str(run.config_path),
        "--output-dir",
        str(output),
        "--model",
        "candidate",
        "--execution-id",
        "exec-1",
        "--dataset-dir",
        str(run.dataset_dir),
        "--shard-results-dir",
        str(results),
    ]


def _summary(folder: Path) -> EvaluationSummary:
    return EvaluationSummary.model_validate_json((folder / "summary.json").read_text(encoding="utf-8"))


def test_shards_evaluated_by_any_instance_merge_into_the_unsharded_evaluation(
    http_run: Callable[..., EvaluateRun], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [FACTUAL], rows=31, shards=3)
        processed = (run.dataset_dir / "processed.jsonl").read_bytes()
        files = [Path(f) for f in write_shards(processed, str(run.root / "shards-3"))]
        results = run.root / "shard-results"
        # One instance got shards 0 and 2, the other shard 1: the deal does not matter.
        for name, share in (("a", [files[0], files[2]]), ("b", [files[1]])):
            folder = run.root / "instances" / name
            folder.mkdir(parents=True)
            for path in share:
                (folder / path.name).symlink_to(path)
            assert evaluate_shards.main(_shard_argv(run, folder, results)) == 0
        assert server.requests_total == 31
        assert evaluate_main(run.argv("candidate", output=run.root / "whole")) == 0
        assert server.requests_total == 31  # the unsharded run found every answer in the cache

    merged = run.root / "merged"
    assert merge_shards.main(_merge_argv(run, results, merged)) == 0
    whole, sharded = _summary(run.root / "whole"), _summary(merged)
    assert sharded.metrics == whole.metrics
    assert [a.category_scores for a in sharded.algorithms] == [a.category_scores for a in whole.algorithms]
    assert (sharded.records_total, sharded.dataset_sha256) == (whole.records_total, whole.dataset_sha256)
    assert sharded.cache_hits == 0 and whole.cache_hits == 31 and sharded.model_calls == 31
    for name in ("factual_knowledge.jsonl", "factual_knowledge_worst_records.json"):
        assert (merged / "algorithms" / name).read_text() == (run.root / "whole" / "algorithms" / name).read_text()
    indexes = [json.loads(line)["index"] for line in (merged / "records.jsonl").read_text().splitlines()]
    assert indexes == list(range(31))

    (results / "shard-00001-of-00003" / "summary.json").unlink()
    capsys.readouterr()
    assert merge_shards.main(_merge_argv(run, results, run.root / "again")) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"merge: error: {results / 'shard-00001-of-00003'}: shard 1 of 3 wrote no summary.json "
        "(its instance failed or never ran)"
    )


QA_ROBUSTNESS = {"algorithm": "QAAccuracySemanticRobustness", "target_output_delimiter": "<OR>", "num_perturbations": 3}


def robust_answer(prompt: str) -> str:
    """Question i's reference, its alternative or a miss, by a hash of the prompt: a perturbed prompt (its
    digits untouched by the perturbations, or split by a space) can get another answer than its original."""
    number = re.search(r"\d+", prompt)
    index = number.group() if number else "?"
    return [f"answer-{index}", f"It is alt-{index}.", "no idea"][hashlib.sha256(prompt.encode()).digest()[0] % 3]


def _evaluated_in_shards(run: EvaluateRun, cache: str) -> Path:
    """Each of the run's shards evaluated by an instance of its own, and merged."""
    processed = (run.dataset_dir / "processed.jsonl").read_bytes()
    count = run.config.model("candidate").shard_count(run.config.pipeline)
    results = run.root / "shard-results"
    for path in (Path(f) for f in write_shards(processed, str(run.root / f"shards-{count}"))):
        folder = run.root / "instances" / path.stem
        folder.mkdir(parents=True)
        (folder / path.name).symlink_to(path)
        assert evaluate_shards.main(_shard_argv(run, folder, results, cache)) == 0
    merged = run.root / "merged"
    assert merge_shards.main(_merge_argv(run, results, merged)) == 0
    return merged


def test_robustness_scores_of_four_shards_are_those_of_one(
    http_run: Callable[..., EvaluateRun], standin_judges: None, tmp_path: Path
) -> None:
    rows, cache = 24, str(tmp_path / "shared-cache")
    with ModelServer(answers=robust_answer) as server:
        one = _evaluated_in_shards(http_run(server.url, [QA_ROBUSTNESS], rows=rows, shards=1), cache)
        calls_for_one = server.requests_total
        server.reset_counters()
        four = _evaluated_in_shards(http_run(server.url, [QA_ROBUSTNESS], rows=rows, shards=4), cache)
        # Every prompt the four shards planned is one K = 1 sent: the perturbations are the same.
        assert server.requests_total == 0
    assert rows * 2 < calls_for_one <= rows * 4

    whole, sharded = _summary(one), _summary(four)
    assert [a.error for a in sharded.algorithms] == [None]
    assert sharded.metrics == whole.metrics
    assert [a.category_scores for a in sharded.algorithms] == [a.category_scores for a in whole.algorithms]
    assert sharded.records_total == whole.records_total == rows
    for name in ("qa_accuracy_semantic_robustness.jsonl", "qa_accuracy_semantic_robustness_worst_records.json"):
        assert (four / "algorithms" / name).read_text() == (one / "algorithms" / name).read_text()
    # Not vacuous: the perturbations changed some answers' scores.
    assert any(value != 0 for key, value in whole.metrics.items() if key.startswith("delta_"))
