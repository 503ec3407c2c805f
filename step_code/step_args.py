"""The arguments every step entry point shares, declared once (the plan's `step_arguments` passes them).

Each step adds its own input folders (`--<input>-dir`) and run options to the parser this returns.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def step_parser(
    module: str,
    doc: str | None,
    *,
    model: bool = False,
    execution_id: bool = False,
    output_type: Callable[[str], Any] = Path,
) -> argparse.ArgumentParser:
    """`--config` and `--output-dir`, plus `--model` and `--execution-id` for steps that take them.

    `output_type=str` for steps that write through `step_code.storage`, whose output may be an s3:// URI.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or module).splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="config.json of the evaluation")
    parser.add_argument("--output-dir", required=True, type=output_type, help="where the step writes its output")
    if model:
        parser.add_argument("--model", required=True, help="the name of the model in the config")
    if execution_id:
        parser.add_argument("--execution-id", required=True, help="the pipeline execution this run belongs to")
    return parser
