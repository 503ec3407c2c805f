"""What the `evalops` commands share: exit codes, the prompt catalog option and the report lines."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK = 0
# An unexpected error (a bug), or a step of a local run that failed.
EXIT_INTERNAL_ERROR = 1
EXIT_STEP_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_POLICY_NOT_MET = 3
# The file is a SageMaker SDK defaults file: it belongs in an environment's `sagemaker_defaults`, not here.
EXIT_SDK_DEFAULTS_FILE = 4
# 128 + SIGINT, what a shell reports for Ctrl-C.
EXIT_INTERRUPTED = 130


def add_catalog_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog-dir",
        type=Path,
        default=None,
        help="prompt catalog folder (default: prompt_catalog/ at the repository root)",
    )


def print_report_paths(path: Path, *, computed: bool, pdf: bool) -> int:
    """The lines `evalops report` ends with, for a local run and a deployed one alike."""
    if computed:
        print("The run has no decision.json: the decision was computed from the evaluation summaries.")
    print(f"Comparison report: {path}")
    if pdf:
        print(f"PDF report: {path.with_suffix('.pdf')}")
    return EXIT_OK
