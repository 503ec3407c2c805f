"""The local runner's order, resume, failure and output handling, with an instant evaluate step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
import yaml

from pipeline_definitions.loading.loader import LoadedConfig, load_config
from pipeline_definitions.local.engine import PolicyNotMet, RunError, RunOptions, StepsFailed, run_plan
from step_code import cleanup, deploy
from step_code.contract.results import Decision
from tests.pipeline_definitions.local.doubles import SAMPLE_MODELS, InstantEvaluate, RecordingEvents
from tests.support.moto_server import MotoServer

EVALUATE_STEPS = tuple(f"Evaluate-{model}" for model in SAMPLE_MODELS)
ALL_STEPS = {"Preprocess", *EVALUATE_STEPS, "Champion", "Select", "RegisterWinner"}


def test_run_executes_every_step_then_resumes_without_running_any(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, events: RecordingEvents, tmp_path: Path
) -> None:
    first = run_plan(sample, RunOptions(output=str(tmp_path)), events)

    assert set(first.executed) == ALL_STEPS and first.skipped == ()
    assert first.decision.winner == "llama3-8b-instruct"
    assert first.registration["winner"] == "llama3-8b-instruct"
    assert Path(first.report).is_file()
    assert "progress mistral-7b-instruct 40/40" in events.lines
    # Select starts only after every evaluate step finished.
    select_started = events.lines.index("started Select")
    assert all(events.lines.index(f"finished {step}") < select_started for step in EVALUATE_STEPS)

    second = run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    assert second.executed == () and set(second.skipped) == ALL_STEPS
    assert second.execution_id == first.execution_id
    assert sorted(instant_evaluate.calls) == sorted(SAMPLE_MODELS)  # no evaluate ran twice


def test_a_failed_step_is_named_its_dependents_wait_and_a_rerun_resumes(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, tmp_path: Path
) -> None:
    instant_evaluate.failures["mistral-7b-instruct"] = "endpoint returned 500 three times"

    with pytest.raises(StepsFailed) as failed:
        run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    assert failed.value.failures == [
        ("Evaluate-mistral-7b-instruct", "evaluate: error: endpoint returned 500 three times")
    ]
    assert not (tmp_path / "steps" / "Select").exists()
    assert (tmp_path / "steps" / "Evaluate-falcon-7b-instruct" / "_SUCCESS").is_file()

    instant_evaluate.failures.clear()
    instant_evaluate.calls.clear()
    resumed = run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    assert instant_evaluate.calls == ["mistral-7b-instruct"]
    assert set(resumed.executed) == {"Evaluate-mistral-7b-instruct", "Select", "RegisterWinner"}


def test_changing_a_run_option_reruns_only_the_steps_it_reaches(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, tmp_path: Path
) -> None:
    run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    approved = run_plan(sample, RunOptions(output=str(tmp_path), approval_status="Approved"), RecordingEvents())

    assert approved.executed == ("RegisterWinner",)
    assert approved.registration["approval_status"] == "Approved"


def test_fresh_starts_over_and_keeps_the_registry(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, tmp_path: Path
) -> None:
    first = run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    fresh = run_plan(sample, RunOptions(output=str(tmp_path), fresh=True), RecordingEvents())

    assert fresh.execution_id != first.execution_id
    assert set(fresh.executed) == ALL_STEPS
    assert fresh.registration["model_package_version"] == 2


def test_no_eligible_candidate_stops_before_registering(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, tmp_path: Path
) -> None:
    instant_evaluate.scores = dict.fromkeys(SAMPLE_MODELS, 0.1)

    with pytest.raises(PolicyNotMet) as not_met:
        run_plan(sample, RunOptions(output=str(tmp_path)), RecordingEvents())

    assert not_met.value.decision.reason.startswith("no candidate meets the selection policy")
    assert Path(not_met.value.report).is_file()
    assert not (tmp_path / "steps" / "RegisterWinner").exists()
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())


def test_an_endpoint_is_cleaned_up_even_when_its_evaluation_failed(
    repo_root: Path, instant_evaluate: InstantEvaluate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sample = yaml.safe_load((repo_root / "configs" / "sample.yaml").read_text())
    sample["models"] = [
        {
            "name": "deployed",
            "model_id": "huggingface-llm-falcon-7b-instruct-bf16",
            "deployment_config": {"instance_type": "ml.g5.2xlarge"},
            "evaluation_config": {"output": "[0].generated_text"},
        },
        sample["models"][0],
    ]
    config_path = tmp_path / "deployed.yaml"
    config_path.write_text(yaml.safe_dump(sample))
    loaded = load_config(config_path, catalog_dir=repo_root / "prompt_catalog")
    ran: list[str] = []

    def step(kind: str) -> Callable[[list[str]], int]:
        def main(argv: list[str]) -> int:
            ran.append(kind)
            return 0

        return main

    monkeypatch.setattr(deploy, "main", step("deploy"))
    monkeypatch.setattr(cleanup, "main", step("cleanup"))
    instant_evaluate.failures["deployed"] = "endpoint timed out"
    instant_evaluate.scores["deployed"] = 0.5

    with pytest.raises(StepsFailed) as failed:
        run_plan(loaded, RunOptions(output=str(tmp_path / "run")), RecordingEvents())

    assert [name for name, _ in failed.value.failures] == ["Evaluate-deployed"]
    assert ran == ["deploy", "cleanup"]


def test_s3_output_is_uploaded_and_resumed_from(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, moto: MotoServer
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-runs")
    prefix = "s3://evalops-runs/team/sample"

    first = run_plan(sample, RunOptions(output=prefix), RecordingEvents())

    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="evalops-runs")["Contents"]}
    assert first.report == f"{prefix}/steps/Select/output/decision/comparison.html"
    assert "team/sample/steps/Select/output/decision/comparison.html" in keys
    assert "team/sample/run.json" in keys and "team/sample/config/config.json" in keys
    assert not any("/input/" in key for key in keys)  # input links are not uploaded
    decision = s3.get_object(Bucket="evalops-runs", Key="team/sample/steps/Select/output/decision/decision.json")
    assert Decision.model_validate_json(decision["Body"].read()).winner == "llama3-8b-instruct"

    second = run_plan(sample, RunOptions(output=prefix), RecordingEvents())

    assert second.executed == () and second.execution_id == first.execution_id

    s3.put_object(Bucket="evalops-runs", Key="team/sample/steps/Evaluate-retired/_SUCCESS", Body=b"old")
    fresh = run_plan(sample, RunOptions(output=prefix, fresh=True), RecordingEvents())

    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="evalops-runs")["Contents"]}
    assert fresh.execution_id != first.execution_id
    assert "team/sample/steps/Evaluate-retired/_SUCCESS" not in keys  # a fresh run leaves no stale step behind
    assert "team/sample/registry/evalops-sample-trivia/2.json" in keys  # the registry is kept


def test_a_run_folder_of_another_pipeline_is_refused(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, tmp_path: Path
) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"pipeline": "other", "execution_id": "abc"}))

    (tmp_path / "steps" / "Preprocess").mkdir(parents=True)

    with pytest.raises(RunError, match="holds a run of pipeline 'other', not 'evalops-sample'"):
        run_plan(sample, RunOptions(output=str(tmp_path), fresh=True), RecordingEvents())
    assert (tmp_path / "steps" / "Preprocess").is_dir()  # --fresh deleted nothing of the other run
