"""The step-kind table is complete: every kind has an entry, and every entry names what exists."""

from __future__ import annotations

import ast
import importlib.util
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline_definitions.planning.step_kinds import STEP_KINDS, StepKind, StepKindSpec
from step_code.contract import files, job_env


def _main_of(module: str) -> ast.FunctionDef:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} does not exist"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert mains, f"{module} has no main(argv)"
    return mains[0]


def test_every_step_kind_has_an_entry() -> None:
    assert set(STEP_KINDS) == set(typing.get_args(StepKind))


def test_every_field_of_an_entry_is_required() -> None:
    # A new kind that leaves out a field fails where the table is built, not later in `evalops plan`.
    optional = {f.name for f in fields(StepKindSpec) if f.default is not MISSING or f.default_factory is not MISSING}
    assert optional <= {"reports_progress"}


@pytest.mark.parametrize("kind", sorted(STEP_KINDS))
def test_an_entry_names_a_step_module_contract_files_and_its_limits(kind: StepKind) -> None:
    spec = STEP_KINDS[kind]
    main = _main_of(spec.entry_module)
    takes_progress = "progress" in {a.arg for a in main.args.kwonlyargs}
    assert takes_progress == spec.reports_progress, spec.entry_module
    assert spec.result_file in vars(files).values()
    assert issubclass(spec.result_model, BaseModel)
    assert set(spec.environment) <= {v for k, v in vars(job_env).items() if k.endswith("_ENV")}
    assert spec.max_runtime_seconds is None or spec.max_runtime_seconds > 0
    assert isinstance(spec.estimated_minutes, float) or callable(spec.estimated_minutes)
