"""Child process of the run-folder lock tests: `evalops run CONFIG --local --output DIR` whose evaluate steps
say that they started (a file) and then wait until the test lets them finish (another file).

Run as `python -m tests.pipeline_definitions.local.run_child CONFIG DIR STARTED RELEASE`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline_definitions.cli.main import main
from step_code import evaluate_step
from step_code.progress import ProgressListener
from tests.pipeline_definitions.local.doubles import InstantEvaluate


def held_evaluate(started: Path, release: Path) -> InstantEvaluate:
    instant = InstantEvaluate()
    answer = instant.main

    def evaluate(argv: list[str] | None = None, *, progress: ProgressListener | None = None) -> int:
        started.touch()
        while not release.exists():
            time.sleep(0.05)
        return answer(argv, progress=progress)

    instant.main = evaluate  # type: ignore[method-assign]
    return instant


if __name__ == "__main__":
    config, output, started, release = sys.argv[1:5]
    evaluate_step.main = held_evaluate(Path(started), Path(release)).main
    sys.exit(main(["run", config, "--local", "--output", output]))
