"""`evalops validate` and `evalops plan` as a user runs them: exit codes, exact output, no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_definitions.cli import main as cli
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import build_plan
from step_code.contract.pricing import PRICE_TABLE_AS_OF

EVALOPS = str(Path(sys.executable).parent / "evalops")
HEAVY_MODULES = ("torch", "ray", "fmeval")


def run(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EVALOPS, *args], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False)


def test_validate_sample(repo_root: Path) -> None:
    result = run(repo_root, "validate", "configs/sample.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "OK: configs/sample.yaml: 3 models, 1 algorithm, 40 prompts\n",
        "",
    )


def test_validate_bad_config_prints_every_problem_and_exits_2(repo_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pipeline: {name: p}\n"
        "dataset: {dataset_name: d, input_data_location: s3://b/k.jsonl, model_input_key: q, target_output_key: a}\n"
        "models:\n"
        "  - name: m1\n"
        "    model_id: x\n"
        "    deployment_config: {instance_type: g5.2xlarge}\n"
        "    evaluation_config: {output: text}\n"
        "model_registry: {model_package_group_name: g}\n"
        "algorithms:\n"
        "  - {algorithm: FactualKnowledge, logical_operator: XOR}\n",
        encoding="utf-8",
    )
    result = run(repo_root, "validate", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:6: models[0].deployment_config.instance_type: 'g5.2xlarge' is not a SageMaker instance type "
        "(expected ml.*)",
        f"{bad}:10: algorithms[0].logical_operator: 'XOR' is not one of: OR, AND",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_warnings_are_printed_but_do_not_fail(repo_root: Path, command: str) -> None:
    result = run(repo_root, command, "configs/reference.yaml")
    assert result.returncode == 0, result.stderr
    catalog = repo_root / "prompt_catalog"
    assert result.stderr.splitlines() == [
        f"warning: configs/reference.yaml:{line}: models[2].finetuning.{key}: '{path}' is neither a file nor a "
        f"non-empty folder in the prompt catalog folder {catalog}/; the training job reads it from the uploaded "
        "catalog and would find no data (add it there or use an s3:// URI)"
        for line, key, path in ((55, "train_data_path", "train_dataset"), (56, "validation_data_path", "val_dataset"))
    ]
    expected = "OK: configs/reference.yaml: 3 models" if command == "validate" else "Plan for configs/reference.yaml"
    assert result.stdout.startswith(expected)


def test_validate_missing_file(repo_root: Path) -> None:
    result = run(repo_root, "validate", "configs/nope.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "configs/nope.yaml: no such file\n")


def test_plan_sample_lists_steps_branches_endpoints_and_estimate(repo_root: Path) -> None:
    result = run(repo_root, "plan", "configs/sample.yaml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    plan = build_plan(load_config(repo_root / "configs" / "sample.yaml").config)
    positions = [out.index(f"\n  {step.name} ") for step in plan.processing_steps]
    assert positions == sorted(positions)
    assert "  Select                        select      ml.m5.large   after Evaluate-llama3-8b-instruct, " in out
    assert "  llama3-8b-instruct: Evaluate-llama3-8b-instruct\n" in out
    assert "Endpoints:\n  none: no model deploys an endpoint\n" in out
    assert f"Estimate for 40 prompts, at on-demand list prices for us-east-1 as of {PRICE_TABLE_AS_OF}" in out
    assert "\nAssumptions:\n  - an endpoint takes 12 min" in out
    assert "Price warnings" not in out


def test_plan_reference_names_the_endpoints_it_creates(repo_root: Path) -> None:
    result = run(repo_root, "plan", "configs/reference.yaml", "--prompts", "1000")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "  falcon-7b: ml.g5.2xlarge x1, deleted by Cleanup-falcon-7b after its evaluation\n"
        "    <prefix>llm-eval-huggingface-llm-falcon-7b-bf16-<execution-id>\n"
    ) in out
    assert "endpoints that existed before are never deleted" in out
    assert "Estimate for 1,000 prompts" in out
    assert "  llama2-7b-finetuned: Finetune-llama2-7b-finetuned -> Deploy-llama2-7b-finetuned -> " in out


def test_plan_warns_about_missing_prices(repo_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "gpu.yaml"
    config.write_text(
        (repo_root / "configs" / "reference.yaml")
        .read_text(encoding="utf-8")
        .replace("ml.g5.2xlarge", "ml.g7.2xlarge"),
        encoding="utf-8",
    )
    result = run(repo_root, "plan", str(config), "--catalog-dir", "prompt_catalog")
    assert result.returncode == 0, result.stderr
    assert (
        "Price warnings (costs marked +? leave these out):\n"
        "  - no inference price for ml.g7.2xlarge in the price table; set "
        "pricing.instance_usd_per_hour.ml.g7.2xlarge to include it\n"
    ) in result.stdout


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_cli_does_not_import_heavy_modules(repo_root: Path, command: str) -> None:
    code = (
        "import json, sys\n"
        "from pipeline_definitions.cli.main import main\n"
        f"code = main([{command!r}, 'configs/sample.yaml'])\n"
        f"print(json.dumps([code, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert json.loads(result.stdout.splitlines()[-1]) == [0, []], result.stderr


def test_internal_errors_are_one_line_unless_debugging(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_: object) -> int:
        raise RuntimeError("catalog reader exploded")

    monkeypatch.setattr(cli, "count_prompts", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["validate", str(repo_root / "configs" / "sample.yaml")]) == 1
    assert capsys.readouterr().err == (
        "evalops: internal error: RuntimeError: catalog reader exploded (set EVALOPS_DEBUG=1 for the traceback)\n"
    )
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError, match="catalog reader exploded"):
        cli.main(["validate", str(repo_root / "configs" / "sample.yaml")])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["plan", "configs/sample.yaml", "--prompts", "0"])
    assert caught.value.code == 2
    assert "expected at least 1, got 0" in capsys.readouterr().err
