"""A sharded evaluation run locally: K instance processes over preprocess's shard files, then the merge.

The same config with shards 1 and 4 against the same deterministic model server gives the same
evaluation (scores, category scores, per-record rows, worst records); a shard that fails fails the
model's evaluation with that shard's reason, and the retried step re-sends only what was not answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.local.engine import RunOptions, StepsFailed, run_plan
from step_code.contract.results import EvaluationSummary
from tests.pipeline_definitions.local.doubles import RecordingEvents
from tests.support.model_server import ModelServer

RECORDS = 41


def _catalog(folder: Path) -> Path:
    folder.mkdir()
    rows = [
        {"question": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no", "topic": ("small", "large")[i >= 20]}
        for i in range(RECORDS)
    ]
    (folder / "parity.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder


def _answer(number: int) -> str:
    # Wrong on every third number, so the scores are neither 0 nor 1 and differ by category.
    right = "yes" if number % 2 == 0 else "no"
    return ("no" if right == "yes" else "yes") if number % 3 == 0 else right


ANSWERS = {f"Is {i} even?": _answer(i) for i in range(RECORDS)}


def _config(tmp_path: Path, url: str, shards: int) -> Path:
    config = {
        "pipeline": {"name": "parity", "shards": shards},
        "dataset": {
            "dataset_name": "parity",
            "input_data_location": "parity.jsonl",
            "model_input_key": "question",
            "target_output_key": "answer",
            "category_key": "topic",
        },
        "models": [
            {
                "name": "parity-chat",
                "model_provider": "openai",
                "endpoint_url": f"{url}/v1/chat/completions",
                "evaluation_config": {"max_concurrency": 2, "max_retries": 0},
            }
        ],
        "algorithms": [{"algorithm": "FactualKnowledge"}, {"algorithm": "ClassificationAccuracy"}],
        "selection": {"primary_metric": "factual_knowledge"},
    }
    path = tmp_path / f"parity-{shards}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _evaluation(run: Path, shards: int) -> Path:
    step = "Evaluate-parity-chat" if shards == 1 else "Merge-parity-chat"
    return run / "steps" / step / "output" / "evaluation"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _comparable(folder: Path) -> dict[str, Any]:
    summary = EvaluationSummary.model_validate_json((folder / "summary.json").read_text())
    records = [
        {k: v for k, v in row.items() if k not in ("latency_ms", "cached")} for row in _jsonl(folder / "records.jsonl")
    ]
    algorithms = {}
    for result in summary.algorithms:
        stem = result.eval_name
        algorithms[stem] = {
            "result": result.model_dump(),
            "eval_output": json.loads((folder / "algorithms" / f"{stem}.json").read_text()),
            "rows": _jsonl(folder / "algorithms" / f"{stem}.jsonl"),
            "worst": json.loads((folder / "algorithms" / f"{stem}_worst_records.json").read_text()),
        }
    counts = summary.model_dump(include={"records_total", "records_succeeded", "records_failed", "metrics"})
    return {"summary": counts, "records": records, "algorithms": algorithms}


def _run(tmp_path: Path, catalog: Path, url: str, shards: int, run: Path) -> Any:
    loaded = load_config(_config(tmp_path, url, shards), catalog_dir=catalog)
    return run_plan(loaded, RunOptions(output=str(run)), RecordingEvents())


@pytest.mark.slow
def test_four_shards_give_the_evaluation_of_one(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "catalog")
    with ModelServer(answers=ANSWERS) as server:
        _run(tmp_path, catalog, server.url, 1, tmp_path / "one")
        one_calls = server.requests_total
        server.reset_counters()
        outcome = _run(tmp_path, catalog, server.url, 4, tmp_path / "four")
        assert server.requests_total == one_calls == RECORDS
        assert max(server.requests_by_prompt.values()) == 1

    shards = sorted((tmp_path / "four" / "steps" / "Preprocess" / "output" / "shards-4").iterdir())
    assert [p.name for p in shards] == [f"shard-0000{i}-of-00004.jsonl" for i in range(4)]
    assert [len(_jsonl(p)) for p in shards] == [10, 10, 10, 11]
    results = tmp_path / "four" / "steps" / "Evaluate-parity-chat" / "output" / "shard-results"
    assert sorted(p.name for p in results.iterdir()) == [f"shard-0000{i}-of-00004" for i in range(4)]

    one, four = _comparable(_evaluation(tmp_path / "one", 1)), _comparable(_evaluation(tmp_path / "four", 4))
    assert four == one
    accuracy = one["summary"]["metrics"]["factual_knowledge"]
    assert accuracy == pytest.approx(sum(_answer(i) == ("yes", "no")[i % 2] for i in range(RECORDS)) / RECORDS)
    assert set(one["algorithms"]["factual_knowledge"]["result"]["category_scores"]) == {"small", "large"}
    merged = EvaluationSummary.model_validate_json((_evaluation(tmp_path / "four", 4) / "summary.json").read_text())
    assert merged.model_calls == RECORDS and merged.latency.p95_ms is not None
    assert outcome.decision.winner == "parity-chat"


@pytest.mark.slow
def test_a_failed_shard_fails_the_evaluation_with_its_reason_and_the_retry_reuses_the_cache(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "catalog")
    run = tmp_path / "run"
    with ModelServer(answers=ANSWERS) as server:
        loaded = load_config(_config(tmp_path, server.url, 4), catalog_dir=catalog)
        # A first run writes the shards; then shard 2 is damaged (the step's input, as S3 would serve it).
        run_plan(loaded, RunOptions(output=str(run)), RecordingEvents())
        shard = run / "steps" / "Preprocess" / "output" / "shards-4" / "shard-00002-of-00004.jsonl"
        intact = shard.read_text(encoding="utf-8")
        shard.write_text("{not json\n" + intact, encoding="utf-8")
        for step in ("Evaluate-parity-chat", "Merge-parity-chat"):
            (run / "steps" / step / "_SUCCESS").unlink()
        for cached in (run / "cache").rglob("*"):
            if cached.is_file():
                cached.unlink()
        server.reset_counters()

        with pytest.raises(StepsFailed) as failed:
            run_plan(loaded, RunOptions(output=str(run)), RecordingEvents())
        ((step, reason),) = failed.value.failures
        assert step == "Evaluate-parity-chat"
        assert reason.startswith("instance 2 of 4: evaluate: error: shard 2 of 4 (shard-00002-of-00004.jsonl): ")
        assert "line 1: not JSON" in reason
        # The other three shards were evaluated and their answers kept.
        assert server.requests_total == RECORDS - 10

        shard.write_text(intact, encoding="utf-8")
        server.reset_counters()
        run_plan(loaded, RunOptions(output=str(run)), RecordingEvents())
        assert server.requests_total == 10
    summary = EvaluationSummary.model_validate_json((_evaluation(run, 4) / "summary.json").read_text())
    assert summary.records_total == RECORDS and summary.cache_hits == RECORDS - 10
