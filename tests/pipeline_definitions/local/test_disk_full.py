"""A full disk during `evalops run --local` (issue 11, defect 10): one line that says so and that a re-run
resumes; no "--- Logging error ---" per log record, no "internal error"; and the re-run does resume."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import boto3
import pytest

from pipeline_definitions.cli.main import main
from step_code import evaluate_step
from step_code.progress import ProgressListener
from tests.pipeline_definitions.local.doubles import FullDisk, InstantEvaluate
from tests.support.moto_server import MotoServer

LOG_RECORDS_AFTER_THE_DISK_FILLS = 500


def _run(repo_root: Path, output: Path) -> int:
    return main(["run", str(repo_root / "configs" / "sample.yaml"), "--local", "--output", str(output)])


def _disk_full_line(output: Path) -> str:
    return (
        f"evalops run: the disk is full (no space left on device under {output}): free some space, then re-run "
        "the same command; it resumes where this run stopped"
    )


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    full_disk = FullDisk(tmp_path)
    full_disk.install(monkeypatch)
    return full_disk


def test_disk_filling_up_during_evaluation_is_one_line_and_the_rerun_resumes(
    repo_root: Path,
    instant_evaluate: InstantEvaluate,
    disk: FullDisk,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = instant_evaluate.main

    def evaluate_on_a_filling_disk(argv: list[str] | None = None, *, progress: ProgressListener | None = None) -> int:
        disk.full = True
        chatty = logging.getLogger("step_code.evaluate_step")
        for index in range(LOG_RECORDS_AFTER_THE_DISK_FILLS):
            chatty.info("answer %d received", index)
        for index in range(LOG_RECORDS_AFTER_THE_DISK_FILLS):
            chatty.warning("could not store a response in the cache: disk full")
            chatty.warning("could not store cache entry %d: disk full", index)
        return answer(argv, progress=progress)

    monkeypatch.setattr(evaluate_step, "main", evaluate_on_a_filling_disk)
    output = tmp_path / "run"

    assert _run(repo_root, output) == 1

    err = capsys.readouterr().err
    assert "Logging error" not in err and "internal error" not in err and "Traceback" not in err
    assert err.splitlines()[-1] == _disk_full_line(output)
    # The steps' warnings: the same one once, one kind at most 3 times, whatever the number of prompts; the line.
    assert err.splitlines() == [
        "could not store a response in the cache: disk full",
        "could not store cache entry 0: disk full",
        "could not store cache entry 1: disk full",
        "could not store cache entry 2: disk full",
        _disk_full_line(output),
    ]
    assert disk.refused > 0

    disk.full = False
    monkeypatch.setattr(evaluate_step, "main", answer)
    assert _run(repo_root, output) == 0
    assert "Preprocess: already done, skipped" in capsys.readouterr().out


def test_a_disk_full_before_the_first_step_is_the_same_line(
    repo_root: Path,
    instant_evaluate: InstantEvaluate,
    disk: FullDisk,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk.full = True
    output = tmp_path / "run"

    assert _run(repo_root, output) == 1

    assert capsys.readouterr().err.splitlines() == [_disk_full_line(output)]
    assert instant_evaluate.calls == []


def test_a_full_disk_while_an_s3_run_downloads_its_state_is_the_same_line(
    repo_root: Path,
    instant_evaluate: InstantEvaluate,
    disk: FullDisk,
    tmp_path: Path,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-runs")
    prefix = "s3://evalops-runs/team/sample"
    config = str(repo_root / "configs" / "sample.yaml")
    assert main(["run", config, "--local", "--output", prefix]) == 0
    capsys.readouterr()
    # The run's working copy of the prefix lives in a temporary folder on the full disk.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    disk.full = True

    assert main(["run", config, "--local", "--output", prefix]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"evalops run: the disk is full (no space left on device under {tmp_path}/evalops-run-")
    assert line.endswith("): free some space, then re-run the same command; it resumes where this run stopped")
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="evalops-runs")["Contents"]}
    assert "team/sample/run.lock" not in keys
