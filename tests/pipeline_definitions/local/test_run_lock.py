"""One run per run folder (issue 11, defect 9): two real `evalops run` processes on one folder, and the
S3 variant against the moto server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from pipeline_definitions.loading.loader import LoadedConfig
from pipeline_definitions.local.engine import RunOptions, run_plan
from pipeline_definitions.local.run_lock import LOCK_FILE, RunLocked, s3_lock
from tests.pipeline_definitions.local.doubles import InstantEvaluate, RecordingEvents
from tests.support.moto_server import MotoServer

WAIT_SECONDS = 120


def _child_env(repo_root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo_root), "EVALOPS_DEBUG": "0"}


def _start_holder(repo_root: Path, output: Path, gate: Path) -> subprocess.Popen[str]:
    """A real `evalops run` whose evaluate steps wait for `gate/release`; returns once it holds the folder."""
    gate.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.pipeline_definitions.local.run_child",
            str(repo_root / "configs" / "sample.yaml"),
            str(output),
            str(gate / "started"),
            str(gate / "release"),
        ],
        cwd=repo_root,
        env=_child_env(repo_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not (gate / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first run never reached its evaluate step"
        time.sleep(0.05)
    return process


def _cli(repo_root: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline_definitions.cli",
            "run",
            "configs/sample.yaml",
            "--local",
            "--output",
            str(output),
        ],
        cwd=repo_root,
        env=_child_env(repo_root),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def test_a_second_run_on_a_busy_folder_exits_2_with_one_line(repo_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    first = _start_holder(repo_root, output, tmp_path)
    try:
        second = _cli(repo_root, output)

        assert second.returncode == 2
        (line,) = second.stderr.splitlines()
        assert line.startswith(f"evalops run: {output} is in use by another evalops run (pid {first.pid} on ")
        assert line.endswith(f"lock {output / LOCK_FILE}): wait for it to end, or choose another --output")
        assert "Traceback" not in second.stderr
    finally:
        (tmp_path / "release").touch()
        out, err = first.communicate(timeout=WAIT_SECONDS)
    assert first.returncode == 0, err
    assert "Registered llama3-8b-instruct" in out


def test_a_killed_holder_does_not_block_the_next_run(repo_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    first = _start_holder(repo_root, output, tmp_path / "first")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=WAIT_SECONDS)

    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "release").touch()
    again = _start_holder(repo_root, output, tmp_path / "again")
    out, err = again.communicate(timeout=WAIT_SECONDS)

    assert again.returncode == 0, err
    assert "Registered llama3-8b-instruct" in out


def test_an_s3_output_is_locked_with_a_conditional_put(
    sample: LoadedConfig, instant_evaluate: InstantEvaluate, moto: MotoServer
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-runs")
    prefix = "s3://evalops-runs/team/sample"

    with s3_lock(prefix):
        holder = s3.get_object(Bucket="evalops-runs", Key=f"team/sample/{LOCK_FILE}")["Body"].read()
        assert f'"pid": {os.getpid()}'.encode() in holder
        with pytest.raises(RunLocked) as locked:
            run_plan(sample, RunOptions(output=prefix), RecordingEvents())
        assert instant_evaluate.calls == []  # nothing ran
        message = str(locked.value)
        assert message.startswith(f"{prefix} is in use by another evalops run (pid {os.getpid()} on ")
        assert message.endswith(f"if that run was killed, delete {prefix}/{LOCK_FILE} and run again")

    outcome = run_plan(sample, RunOptions(output=prefix), RecordingEvents())

    assert outcome.decision.winner == "llama3-8b-instruct"
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="evalops-runs")["Contents"]}
    assert f"team/sample/{LOCK_FILE}" not in keys  # released when the run ended
