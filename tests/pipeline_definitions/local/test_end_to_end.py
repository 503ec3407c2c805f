"""The local run with the real steps (fmeval and ray included): the sample, and a run against a model
server that is killed part-way and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.local.engine import RunOptions, run_plan
from step_code.contract.results import Decision, EvaluationSummary
from tests.pipeline_definitions.local.doubles import RecordingEvents
from tests.support.model_server import ModelServer

DECISION_DIR = Path("steps/Select/output/decision")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _exact_inclusion(output: str, reference: str) -> float:
    """fmeval's factual_knowledge for one record, written out independently: any alternative, case-insensitive."""
    return float(any(option.lower() in output.lower() for option in reference.split("<OR>")))


def _summary(run: Path, model: str) -> EvaluationSummary:
    path = run / "steps" / f"Evaluate-{model}" / "output" / "evaluation" / "summary.json"
    return EvaluationSummary.model_validate_json(path.read_text())


@pytest.mark.slow
def test_sample_run_scores_and_selects_as_the_policy_says(repo_root: Path, tmp_path: Path) -> None:
    config_path = repo_root / "configs" / "sample.yaml"
    config = load_config(config_path).config

    assert main(["run", str(config_path), "--local", "--output", str(tmp_path)]) == 0

    dataset = _jsonl(repo_root / "prompt_catalog" / "evaluation_dataset_trivia.jsonl")
    expected: dict[str, float] = {}
    for model in config.models:
        assert model.responses_location is not None
        recorded = {
            row["prompt"]: row["modelResponses"][0]["response"]
            for row in _jsonl(repo_root / "prompt_catalog" / model.responses_location)
        }
        template = model.evaluation_config.prompt_template
        scores = [
            _exact_inclusion(recorded[template.replace("$model_input", row["question"])], row["answer"])
            for row in dataset
        ]
        expected[model.name] = sum(scores) / len(scores)
        assert _summary(tmp_path, model.name).metrics["factual_knowledge"] == pytest.approx(expected[model.name])

    # The sample's policy, applied by hand: at least 0.5, then the highest score (ties by name).
    minimum = config.selection.min_primary_score
    assert minimum is not None
    eligible = sorted((-score, name) for name, score in expected.items() if score >= minimum)
    decision = Decision.model_validate_json((tmp_path / DECISION_DIR / "decision.json").read_text())
    assert decision.winner == eligible[0][1]
    assert {c.model for c in decision.candidates if c.eligible} == {name for _, name in eligible}
    assert all(c.reasons for c in decision.candidates)

    html = (tmp_path / DECISION_DIR / "comparison.html").read_text()
    for model in config.models:
        assert f"<h3>{model.name}</h3>" in html
    assert "Sydney is the capital of Australia." in html  # one of falcon's wrong answers, as a worst record


@pytest.mark.slow
def test_a_killed_run_resumes_without_calling_the_model_again(repo_root: Path, tmp_path: Path) -> None:
    dataset = _jsonl(repo_root / "prompt_catalog" / "evaluation_dataset_trivia.jsonl")
    answers = {f"Answer briefly. {row['question']}": row["answer"].split("<OR>")[0] for row in dataset}
    answers |= {f"Q: {row['question']}": "I am not sure." for row in dataset}
    catalog = repo_root / "prompt_catalog"
    run = tmp_path / "run"

    with ModelServer(answers=answers, latency_seconds=0.15) as server:
        config = yaml.safe_load((repo_root / "configs" / "sample.yaml").read_text())
        config["models"] = [
            {
                "name": name,
                "model_provider": "openai",
                "endpoint_url": f"{server.url}/v1/chat/completions",
                "evaluation_config": {"prompt_template": template, "max_concurrency": 1, "max_retries": 0},
            }
            for name, template in (("direct-chat", "Answer briefly. $model_input"), ("unsure-chat", "Q: $model_input"))
        ]
        config["selection"]["max_p95_latency_ms"] = 5000
        config_path = tmp_path / "http.yaml"
        config_path.write_text(yaml.safe_dump(config))
        total = 2 * len(dataset)

        command = [str(Path(sys.executable).with_name("evalops")), "run", str(config_path), "--local"]
        command += ["--catalog-dir", str(catalog), "--output", str(run)]
        child = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 180
            while server.requests_total < total // 4:
                assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
                assert time.monotonic() < deadline, "the run sent too few requests"
                time.sleep(0.05)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            if child.stderr:
                child.stderr.close()
        answered = len(list((run / "cache").rglob("*.json")))
        assert 0 < answered < total
        server.reset_counters()

        outcome = run_plan(
            load_config(config_path, catalog_dir=catalog), RunOptions(output=str(run)), RecordingEvents()
        )

        assert "Preprocess" in outcome.skipped
        assert server.requests_total == total - answered
        assert max(server.requests_by_prompt.values()) == 1
        summaries = [_summary(run, name) for name in ("direct-chat", "unsure-chat")]
        assert sum(s.cache_hits for s in summaries) == answered
        assert sum(s.model_calls for s in summaries) == total - answered

    assert outcome.decision.winner == "direct-chat"
    unsure = next(c for c in outcome.decision.candidates if c.model == "unsure-chat")
    assert unsure.reasons == ["excluded: factual_knowledge 0.0000 is below the minimum 0.5"]
    direct = summaries[0]
    assert direct.metrics["factual_knowledge"] == pytest.approx(1.0)
    assert direct.latency.p95_ms is not None and direct.latency.p95_ms >= 150
    html = Path(outcome.report).read_text()
    assert "p95 limit 5000 ms" in html and "unsure-chat" in html
