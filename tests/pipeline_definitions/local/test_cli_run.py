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
        "evalops run: re-run the same command to resume (finished steps are skipped)",
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
