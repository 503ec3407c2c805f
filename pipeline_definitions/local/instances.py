"""A multi-instance step on this machine: one process per instance, as SageMaker starts one container each.

Each instance gets its own input folder: a sharded input (ShardedByS3Key) holds only that instance's
share of the files (file j of the sorted listing goes to instance j mod K, the even deal SageMaker
promises), every other input is the step's whole input. All instances write into the step's one output
folder, as all containers of a processing job upload to one S3 prefix. The processes run the step's
entry module with the step's arguments, the same code path as a job's containers. The step fails when
any instance fails, with that instance's last stderr line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline_definitions.planning.plan import PlannedStep
from pipeline_definitions.planning.step_kinds import STEP_KINDS

logger = logging.getLogger(__name__)

INSTANCES_DIR = "instances"


def _instance_inputs(step: PlannedStep, input_root: Path, instance_root: Path, index: int) -> None:
    sharded = {item.name for item in step.inputs if item.sharded}
    instance_root.mkdir(parents=True, exist_ok=True)
    for item in step.inputs:
        source = (input_root / item.name).resolve()
        target = instance_root / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.name not in sharded:
            target.symlink_to(source, target_is_directory=source.is_dir())
            continue
        target.mkdir()
        files = sorted(path for path in source.iterdir() if path.is_file())
        for position, path in enumerate(files):
            if position % step.instance_count == index:
                (target / path.name).symlink_to(path)


def _instance_argv(argv: Sequence[str], input_root: Path, instance_root: Path) -> list[str]:
    root = str(input_root)
    return [str(instance_root) + arg[len(root) :] if arg == root or arg.startswith(root + "/") else arg for arg in argv]


def _environment() -> dict[str, str]:
    # The child imports step_code from the tree this process imported it from.
    tree = str(Path(__file__).resolve().parents[2])
    current = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": tree if not current else f"{tree}{os.pathsep}{current}"}


def run_instances(step: PlannedStep, folder: Path, argv: Sequence[str]) -> tuple[int, str]:
    """Runs the step's K instances in parallel; (0, "") or (status, reason of the first failed instance)."""
    input_root = folder / "input"
    processes = []
    for index in range(step.instance_count):
        instance_root = folder / INSTANCES_DIR / str(index) / "input"
        _instance_inputs(step, input_root, instance_root, index)
        command = [
            sys.executable,
            "-m",
            STEP_KINDS[step.kind].entry_module,
            *_instance_argv(argv, input_root, instance_root),
        ]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_environment())
        )
    failures = []
    for index, process in enumerate(processes):
        _, stderr = process.communicate()
        if stderr.strip():
            logger.info("%s instance %d of %d wrote to stderr:\n%s", step.name, index, step.instance_count, stderr)
        if process.returncode != 0:
            said = [line.strip() for line in stderr.splitlines() if line.strip()]
            reason = said[-1] if said else f"exited with status {process.returncode}"
            failures.append((process.returncode, f"instance {index} of {step.instance_count}: {reason}"))
    return failures[0] if failures else (0, "")
