"""`evalops run --local` and `evalops report` as a user sees them: output lines and exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline_definitions.cli.main import main
from tests.pipeline_definitions.local.doubles import SAMPLE_MODELS, InstantEvaluate


def _run(repo_root: Path, output: Path, *extra: str) -> int:
    return main(["run", str(repo_root / "configs" / "sample.yaml"), "--local", "--output", str(output), *extra])


def test_run_prints_progress_the_decision_and_the_report(
    repo_root: Path, instant_evaluate: InstantEvaluate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(repo_root, tmp_path) == 0

    out = capsys.readouterr().out
    assert "Evaluate-llama3-8b-instruct: started" in out
    assert "mistral-7b-instruct: 40/40 prompts (40 answered now, 0 from the cache, 0 failed)" in out
    assert "Decision: llama3-8b-instruct selected with weighted score 0.9000" in out
    assert f"Comparison report: {tmp_path / 'steps/Select/output/decision/comparison.html'}" in out
    assert "Registered llama3-8b-instruct as file://" in out

    assert _run(repo_root, tmp_path) == 0
    assert "Preprocess: already done, skipped" in capsys.readouterr().out


def test_a_failed_step_is_one_line_and_exit_1(
    repo_root: Path, instant_evaluate: InstantEvaluate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instant_evaluate.failures["falcon-7b-instruct"] = "responses file is not JSON Lines"

    assert _run(repo_root, tmp_path) == 1

    assert capsys.readouterr().err.splitlines() == [
        "evalops run: step Evaluate-falcon-7b-instruct failed: evaluate: error: responses file is not JSON Lines",
        "evalops run: finished steps are kept: once the cause above is fixed (or has passed, such as throttling), "
        "the same command resumes from the failed step",
    ]


def test_policy_not_met_exits_3_with_the_reason_and_the_report(
    repo_root: Path, instant_evaluate: InstantEvaluate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instant_evaluate.scores = dict.fromkeys(SAMPLE_MODELS, 0.3)

    assert _run(repo_root, tmp_path) == 3

    captured = capsys.readouterr()
    assert "Comparison report: " in captured.out
    assert captured.err.startswith("evalops run: selection policy not met: no candidate meets the selection policy")


def test_bad_config_and_missing_local_flag_are_user_errors(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text((repo_root / "configs" / "sample.yaml").read_text().replace("parallelism: 4", "parallelism: 0"))

    assert main(["run", str(broken), "--local", "--output", str(tmp_path / "run")]) == 2
    assert "pipeline.parallelism" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

    assert main(["run", str(repo_root / "configs" / "sample.yaml")]) == 2
    assert "only --local is supported" in capsys.readouterr().err


def test_report_is_rebuilt_from_a_run_folder(
    repo_root: Path, instant_evaluate: InstantEvaluate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(repo_root, tmp_path) == 0
    report = tmp_path / "steps" / "Select" / "output" / "decision" / "comparison.html"
    original = report.read_text()
    report.unlink()
    capsys.readouterr()

    assert main(["report", str(tmp_path)]) == 0
    assert report.read_text() == original
    assert capsys.readouterr().out.strip() == f"Comparison report: {report}"

    shutil.rmtree(tmp_path / "steps" / "Select")
    assert main(["report", str(tmp_path)]) == 0
    assert "decision was computed from the evaluation summaries" in capsys.readouterr().out
    assert "Winner: llama3-8b-instruct" in (tmp_path / "comparison.html").read_text()

    assert main(["report", str(tmp_path / "steps")]) == 2
    assert "is not a local run folder" in capsys.readouterr().err


# -- AWS access is checked before the first step (issue 12, item 5) ------------------------------------------


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere boto3 looks: environment, shared files, container and instance endpoints."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


NO_CREDENTIALS_WAY_OUT = (
    ", and none were found: configure them (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), or evaluate those models through a local provider (http, openai or recorded)"
)


def test_a_deploying_config_without_credentials_stops_before_any_step(
    repo_root: Path, no_aws_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "run"

    code = main(["run", str(repo_root / "configs" / "reference.yaml"), "--local", "--output", str(output)])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "evalops run: AWS credentials are needed for model llama2-7b-f (deploys a SageMaker endpoint); "
        "model falcon-7b (deploys a SageMaker endpoint); "
        "model llama2-7b-finetuned (deploys a SageMaker endpoint and fine-tunes on SageMaker)" + NO_CREDENTIALS_WAY_OUT
    ]
    assert not (output / "steps").exists() and not (output / "run.json").exists()


def test_bedrock_and_the_sagemaker_registry_are_named_too(
    repo_root: Path, no_aws_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = (repo_root / "configs" / "sample.yaml").read_text()
    bedrock = sample.replace(
        "    model_provider: recorded\n    model_id: huggingface-llm-falcon-7b-instruct-bf16\n"
        "    responses_location: recorded/falcon-7b-instruct.jsonl\n",
        "    model_provider: bedrock\n    model_id: amazon.nova-micro-v1:0\n",
    )
    assert bedrock != sample
    config = tmp_path / "bedrock.yaml"
    config.write_text(bedrock)
    catalog = str(repo_root / "prompt_catalog")

    code = main(
        [
            "run",
            str(config),
            "--local",
            "--catalog-dir",
            catalog,
            "--registry",
            "sagemaker",
            "--output",
            str(tmp_path / "run"),
        ]
    )

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "evalops run: AWS credentials are needed for model falcon-7b-instruct (calls Bedrock); --registry sagemaker"
        + NO_CREDENTIALS_WAY_OUT
    ]


def test_a_local_only_config_needs_no_credentials(
    repo_root: Path, instant_evaluate: InstantEvaluate, no_aws_credentials: None, tmp_path: Path
) -> None:
    assert _run(repo_root, tmp_path) == 0
