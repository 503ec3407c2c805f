"""Test doubles for the local runner: an evaluate step that answers at once, and a display that records.

Most runner behaviour (order, resume, failures, S3 output) does not depend on fmeval, so those tests
replace `step_code.evaluate_step.main` with `InstantEvaluate`, which parses the real step's arguments and
writes a summary in the real shape. The end-to-end tests (marked slow) run the real step.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline_definitions.planning.plan import PlannedStep
from step_code import evaluate_step
from step_code.progress import ProgressListener
from tests.step_code.select.summaries import make_summary, worst_record, write_evaluation_output

SAMPLE_MODELS = ("llama3-8b-instruct", "mistral-7b-instruct", "falcon-7b-instruct")


@dataclass
class InstantEvaluate:
    """Stands in for the evaluate step: a score per model, or a failure printed the way run_step prints it."""

    scores: dict[str, float] = field(default_factory=lambda: dict(zip(SAMPLE_MODELS, (0.9, 0.8, 0.4), strict=True)))
    failures: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def main(self, argv: list[str] | None = None, *, progress: ProgressListener | None = None) -> int:
        args = evaluate_step.parse_args(argv)
        self.calls.append(args.model)
        if args.model in self.failures:
            print(f"evaluate: error: {self.failures[args.model]}", file=sys.stderr)
            return 1
        if progress is not None:
            progress.on_progress(args.model, 0, 0, 0, 40)
            progress.on_progress(args.model, 40, 0, 0, 40)
        summary = make_summary(args.model, {"factual_knowledge": self.scores[args.model]}).model_copy(
            update={"execution_id": args.execution_id}
        )
        write_evaluation_output(Path(args.output_dir), summary, [worst_record("Q?", "A", "B", 0.0)])
        return 0


@dataclass
class RecordingEvents:
    """Keeps what the runner reports, for assertions."""

    lines: list[str] = field(default_factory=list)

    def step_started(self, step: PlannedStep) -> None:
        self.lines.append(f"started {step.name}")

    def step_skipped(self, step: PlannedStep) -> None:
        self.lines.append(f"skipped {step.name}")

    def step_finished(self, step: PlannedStep, seconds: float) -> None:
        self.lines.append(f"finished {step.name}")

    def step_failed(self, step: PlannedStep, reason: str) -> None:
        self.lines.append(f"failed {step.name}: {reason}")

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        self.lines.append(f"progress {model} {invoked + cache_hits}/{total}")


class FullDisk:
    """A disk that fills up: once `full` is set, every write to a file under `root` fails with ENOSPC.

    It stands in at the one seam every writer shares (`open`, which `Path.write_text`, `os.fdopen` and
    logging's FileHandler all go through), so the run meets the error wherever it writes, as on a real disk.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())
        self.full = False
        self.refused = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open = io.open

        def open_on_this_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+") and self._on_this_disk(file):
                return _FileOnFullDisk(handle, self)
            return handle

        monkeypatch.setattr(io, "open", open_on_this_disk)
        monkeypatch.setattr(builtins, "open", open_on_this_disk)

    def _on_this_disk(self, file: Any) -> bool:
        path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file)
        return str(path).startswith(self.root)

    def check(self) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FileOnFullDisk:
    def __init__(self, handle: Any, disk: FullDisk) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        self._disk.check()
        written: int = self._handle.write(data)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self) -> _FileOnFullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __iter__(self) -> Any:
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)
