"""The rendered definitions of the shipped configs, compared byte for byte with the files in golden/.

After an intended change, regenerate them and review the diff:
    EVALOPS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/pipeline_definitions/rendering/test_golden.py
"""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline_definitions.planning.plan import EvaluationPlan, build_plan
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from step_code.contract.config import Config
from tests.pipeline_definitions.rendering.conftest import GOLDEN_DIR, REPO_ROOT, shipped_config, targets_for


def test_matches_golden_file(config_name: str, rendered: tuple[Config, EvaluationPlan, str]) -> None:
    golden = GOLDEN_DIR / f"{config_name}.json"
    if os.environ.get("EVALOPS_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered[2])
    assert golden.exists(), f"{golden} is missing; create it with EVALOPS_UPDATE_GOLDEN=1"
    assert rendered[2] == golden.read_text(), f"definition of {config_name} differs from {golden.name}"


def test_a_second_render_in_this_process_is_identical(
    config_name: str, rendered: tuple[Config, EvaluationPlan, str]
) -> None:
    config = shipped_config(config_name)
    assert render_definition(build_plan(config), config, targets_for(config)) == rendered[2]


RENDER_SCRIPT = """
import sys
from tests.pipeline_definitions.rendering.conftest import shipped_config, targets_for
from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.rendering.sagemaker_definition import render_definition

config = shipped_config(sys.argv[1])
sys.stdout.write(render_definition(build_plan(config), config, targets_for(config)))
"""


def test_a_render_in_another_process_is_identical(
    config_name: str, rendered: tuple[Config, EvaluationPlan, str]
) -> None:
    # Another hash seed, another process: nothing may depend on set order or object ids.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_SCRIPT, config_name],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    # Also proves the SDK prints nothing to stdout (its "sagemaker.config INFO" lines go there).
    assert result.stdout == rendered[2]
