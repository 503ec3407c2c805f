"""stacks -> pipeline_definitions -> step_code, contract at the bottom: nothing imports upward."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.layers import tree_upward_imports, upward_imports


def test_no_module_imports_a_layer_above_it(repo_root: Path) -> None:
    problems = tree_upward_imports(repo_root)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("step_code.evaluate_step", "from pipeline_definitions.planning.plan import build_plan\n"),
        ("step_code.contract.config", "from step_code import storage\n"),
        ("step_code.runners.base", "def f():\n    import stacks.stage\n"),
        ("pipeline_definitions.rendering.definition_builder", "from pipeline_definitions.local import engine\n"),
        ("pipeline_definitions.local.engine", "from pipeline_definitions.cli.main import main\n"),
        ("stacks.safety_net_lambda.index", "from step_code.contract.tags import TAG_KEEP\n"),
    ],
)
def test_the_checker_catches_an_upward_import(module: str, source: str) -> None:
    (problem,) = upward_imports(source, module)
    assert problem.module == module and problem.line >= 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("stacks.stage", "from pipeline_definitions.loading.loader import load_config\n"),
        ("pipeline_definitions.cli.main", "from pipeline_definitions.local import engine\n"),
        ("step_code.evaluate_step", "from step_code.contract import files\nimport boto3\n"),
    ],
)
def test_the_checker_allows_downward_imports(module: str, source: str) -> None:
    assert upward_imports(source, module) == []
