"""The step code bundle: a reproducible zip of step_code/ (nothing else) that Python imports from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from pipeline_definitions.planning.step_kinds import STEP_KINDS
from stacks.components.step_code_bundle import bundle_members, write_bundle
from tests.stacks.conftest import SynthesizedApp


def test_the_bundle_holds_python_sources_and_definition_data_only(repo_root: Path) -> None:
    names = [name for name, _ in bundle_members(repo_root)]
    assert names == sorted(names)
    assert {name.split("/", 1)[0] for name in names} == {"step_code"}
    assert "step_code/__init__.py" in names and "step_code/contract/files.py" in names
    for name in names:
        assert name.endswith(".py") or (name.startswith("step_code/contract/") and name.endswith(".yaml")), name
        assert "__pycache__" not in name


def test_the_bundle_is_byte_for_byte_reproducible(repo_root: Path, tmp_path: Path) -> None:
    write_bundle(repo_root, tmp_path / "first.zip")
    write_bundle(repo_root, tmp_path / "second.zip")
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.zip") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def staged_bundle(app: SynthesizedApp) -> Path:
    """The zip the pipeline's code input points at, as staged in cdk.out."""
    key = app.stage.evaluation.step_code.asset.s3_object_key
    return app.outdir / f"asset.{key}"


def test_the_staged_asset_is_the_bundle(reference_app: SynthesizedApp, repo_root: Path) -> None:
    with zipfile.ZipFile(staged_bundle(reference_app)) as archive:
        assert archive.namelist() == [name for name, _ in bundle_members(repo_root)]
    template = reference_app.template(reference_app.stage.evaluation)
    (pipeline,) = template.find_resources("AWS::SageMaker::Pipeline").values()
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0]
    key = reference_app.stage.evaluation.step_code.asset.s3_object_key
    assert f"s3://${{CodeBucket}}/{key}" in body
    assert f"/opt/ml/processing/input/code/{key}" in body


def test_python_imports_the_steps_from_the_staged_zip(reference_app: SynthesizedApp, tmp_path: Path) -> None:
    bundle = staged_bundle(reference_app)
    probe = (
        "import json, step_code.step_io, step_code.contract.pricing as pricing;"
        "print(json.dumps([step_code.step_io.__file__, pricing.__file__, pricing.price_table().region]))"
    )
    step_io, pricing_file, region = run_from_bundle(bundle, probe, tmp_path)
    assert step_io.startswith(str(bundle)) and pricing_file.startswith(str(bundle))
    assert region


def test_every_step_entry_point_is_in_the_staged_zip(reference_app: SynthesizedApp, tmp_path: Path) -> None:
    bundle = staged_bundle(reference_app)
    modules = {kind: spec.entry_module for kind, spec in STEP_KINDS.items()}
    probe = (
        "import importlib.util, json;"
        f"print(json.dumps({{k: importlib.util.find_spec(m).origin for k, m in {modules!r}.items()}}))"
    )
    origins = run_from_bundle(bundle, probe, tmp_path)
    branch = ["finetune", "deploy", "evaluate", "evaluate_shards", "merge", "cleanup"]
    assert sorted(origins) == sorted(["preprocess", *branch, "champion", "select", "register"])
    assert all(origin.startswith(str(bundle)) for origin in origins.values()), origins


def run_from_bundle(bundle: Path, probe: str, cwd: Path) -> Any:
    """Run Python code outside the repository with the bundle first on the path, as the processing job does."""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(bundle)},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)
