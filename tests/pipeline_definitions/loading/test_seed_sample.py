"""Every file of the reference sample's config folder, unchanged: each evaluation config validates and plans, every
key it uses lands where `sample_compat.SAMPLE_KEYS` says, and the SDK defaults file is named for what it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli import main as cli
from pipeline_definitions.cli.common import EXIT_SDK_DEFAULTS_FILE
from pipeline_definitions.loading.loader import LoadedConfig, load_config
from pipeline_definitions.loading.sample_compat import REGISTER_CONFIG_FIELDS, SAMPLE_KEYS, SampleKey
from pipeline_definitions.planning import plan as planning
from step_code import finetune
from step_code.contract.config import Config
from tests.support.seed_sample import (
    EVALUATION_CONFIGS,
    FINETUNING_CONFIGS,
    SDK_DEFAULTS_FILE,
    sample_s3_layout,
    seed_sample_dir,
)

MISSING_FOLDER_WARNING = re.compile(
    r"^.*: models\[\d\]\.finetuning(_config)?\.(train|validation)_data_path: '(train|val)_dataset' is neither a file "
    r"nor a non-empty folder in the prompt catalog folder .*$"
)


def _config(name: str) -> Path:
    return seed_sample_dir() / "configs" / name


def _datasets() -> Path:
    return seed_sample_dir() / "datasets"


def test_the_folder_holds_eight_evaluation_configs_and_the_sdk_defaults_file() -> None:
    names = sorted(path.name for path in (seed_sample_dir() / "configs").iterdir())
    assert names == sorted([*EVALUATION_CONFIGS, SDK_DEFAULTS_FILE])


@pytest.mark.parametrize("name", EVALUATION_CONFIGS)
def test_each_evaluation_config_validates_and_plans_unchanged(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(_config(name))
    assert cli.main(["validate", path, "--catalog-dir", str(_datasets())]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"OK: {path}: ")
    # The sample's datasets folder is flat (its S3 bucket had folders): the only warnings name the two folders.
    warnings = err.splitlines()
    assert all(MISSING_FOLDER_WARNING.match(line) for line in warnings), warnings
    assert len(warnings) == (2 if name in FINETUNING_CONFIGS else 0)

    assert cli.main(["plan", path, "--catalog-dir", str(_datasets())]) == 0
    out, _ = capsys.readouterr()
    assert "Model registry (the winner is registered in its group" in out


def test_the_sdk_defaults_file_gets_one_line_and_its_own_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(_config(SDK_DEFAULTS_FILE))
    for command in ("validate", "plan"):
        assert cli.main([command, path]) == EXIT_SDK_DEFAULTS_FILE
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"{path}: a SageMaker Python SDK defaults file, SchemaVersion 1.0 (sets "
            "SageMaker.PythonSDK.Modules.RemoteFunction), not an evaluation config: name it in "
            "configs/environments.yaml as `sagemaker_defaults: <path>` for the environment whose jobs should use its "
            "settings, and validate the evaluation configs beside it instead\n"
        )
    assert EXIT_SDK_DEFAULTS_FILE not in (0, 1, 2, 3)


def sample_key(path: str) -> SampleKey | None:
    """The table row of a key path in the sample's spelling (`models[2].finetuning.parameters.epoch`)."""
    # Below its section line, `finetuning_config` is the other spelling of `finetuning`.
    parts = _pattern_parts(re.sub(r"\.finetuning_config\.", ".finetuning.", path))
    exact = [row for row in SAMPLE_KEYS if _pattern_parts(row.sample) == parts]
    if exact:
        return exact[0]
    return next((row for row in SAMPLE_KEYS if _matches(_pattern_parts(row.sample), parts)), None)


def _pattern_parts(path: str) -> tuple[str, ...]:
    return tuple(re.sub(r"\[\d*\]", "[]", path).replace("[]", ".[]").split("."))


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    return len(pattern) == len(parts) and all(p in ("*", part) for p, part in zip(pattern, parts, strict=True))


def _leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every key path of a YAML document whose value is not a mapping or a list of mappings."""
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, f"{path}.{key}" if path else key)]
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        return [leaf for index, item in enumerate(node) for leaf in _leaves(item, f"{path}[{index}]")]
    return [(path, node)]


def _evalops_value(dump: dict[str, Any], pattern: str, sample_path: str) -> Any:
    """The loaded value at `pattern` (`[]` and `*` taken from the sample's concrete path, in order)."""
    indices = iter(re.findall(r"\[(\d+)\]", sample_path))
    last_key = sample_path.rsplit(".", 1)[-1]
    node: Any = dump
    for part in pattern.replace("[]", ".[]").split("."):
        node = node[int(next(indices))] if part == "[]" else node[last_key if part == "*" else part]
    return node


# The two rewrites the loader makes, and why: the sample's placeholder spelling, and folder channels.
def _expected(sample_path: str, value: Any) -> Any:
    if sample_path.endswith("prompt_template"):
        return value.replace("$feature", "$model_input")
    if sample_path.endswith("_data_path"):
        return value + "/"
    return value


@pytest.mark.parametrize("name", EVALUATION_CONFIGS)
def test_every_key_of_the_sample_lands_where_the_table_says(name: str, tmp_path: Path) -> None:
    raw = yaml.safe_load(_config(name).read_text(encoding="utf-8"))
    loaded = load_config(_config(name), catalog_dir=sample_s3_layout(tmp_path / "catalog"))
    dump = json.loads(loaded.normalized_json())
    leaves = _leaves(raw)
    assert len(leaves) > 20
    for path, value in leaves:
        row = sample_key(path)
        assert row is not None, f"{name}: {path} is in no row of SAMPLE_KEYS"
        assert _evalops_value(dump, row.evalops, path) == _expected(path, value), f"{name}: {path}"
    # What the steps read back is what was loaded.
    assert Config.model_validate_json(loaded.normalized_json()) == loaded.config


def test_register_config_fields_come_from_the_table() -> None:
    assert REGISTER_CONFIG_FIELDS == {"model_package_group_name": "model_package_group_name"}


def test_the_readme_lists_every_row_of_the_table(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Coming from the reference sample", 1)[1].split("\n## ", 1)[0]
    for row in SAMPLE_KEYS:
        assert f"`{row.sample}`" in section, row.sample


def _finetuned(loaded: LoadedConfig) -> list[Any]:
    return [model for model in loaded.config.models if model.finetuning is not None]


@pytest.mark.parametrize("name", FINETUNING_CONFIGS)
def test_the_sample_fine_tuning_folders_become_the_job_channels(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = sample_s3_layout(tmp_path / "catalog")
    loaded = load_config(_config(name), catalog_dir=catalog)
    assert loaded.warnings == []
    [model] = _finetuned(loaded)
    assert model.finetuning is not None
    # The definition hands the steps this config: the finetune step builds the channels from it.
    assert finetune.training_channels(model, model.finetuning, "s3://data/catalog/abc") == {
        "training": "s3://data/catalog/abc/train_dataset/",
        "validation": "s3://data/catalog/abc/val_dataset/",
    }
    plan = planning.build_plan(loaded.config)
    assert [(c.model, c.channel, c.location) for c in plan.training_channels] == [
        (model.name, finetune.TRAINING_CHANNEL, "train_dataset/"),
        (model.name, finetune.VALIDATION_CHANNEL, "val_dataset/"),
    ]

    assert cli.main(["plan", str(_config(name)), "--catalog-dir", str(catalog)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert (
        f"Fine-tuning channels (relative paths are in the uploaded prompt catalog, {catalog}):\n"
        f"  {model.name}: training <- train_dataset/ (holds template.json, train_dataset_trivia.jsonl)\n"
        f"  {model.name}: validation <- val_dataset/ (holds validation_dataset_trivia.jsonl)\n"
    ) in out


def test_register_config_becomes_the_registry_group_and_model_registry_is_optional(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded = load_config(_config("sm_pipelines__pipeline_finetuning_config.yaml"), catalog_dir=_datasets())
    config = loaded.config
    assert config.registry_is_default
    assert config.model("llama2-7b-finetuned").model_package_group_name == "FMEvaluationFineTunedModel"
    pipeline = "llm-evaluation-single-model-finetuning"
    assert config.model_package_groups() == {
        pipeline: f"Evaluation winners of pipeline {pipeline}",
        "FMEvaluationFineTunedModel": f"{pipeline}: llama2-7b-finetuned",
    }
    assert cli.main(["plan", str(loaded.path), "--catalog-dir", str(_datasets())]) == 0
    out, _ = capsys.readouterr()
    assert (
        "Model registry (the winner is registered in its group; the Registry stack creates every group):\n"
        "  llm-evaluation-single-model-finetuning: no model registers here (named after pipeline.name: the config "
        "has no model_registry; set model_registry to choose)\n"
        "  FMEvaluationFineTunedModel: llama2-7b-finetuned\n"
    ) in out
    # The steps read the normalized config: the group is written out, and reading it back keeps it.
    normalized = json.loads(loaded.normalized_json())
    assert normalized["model_registry"]["model_package_group_name"] == "llm-evaluation-single-model-finetuning"
    assert normalized["models"][0]["model_package_group_name"] == "FMEvaluationFineTunedModel"


def test_a_config_with_model_registry_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_config(_config("sm_pipelines_advanced__pipeline_scale_config.yaml"), catalog_dir=_datasets())
    assert not loaded.config.registry_is_default
    assert list(loaded.config.model_package_groups()) == ["LLMEvaluationPipeline"]
    assert cli.main(["plan", str(loaded.path), "--catalog-dir", str(_datasets())]) == 0
    out, _ = capsys.readouterr()
    assert "  LLMEvaluationPipeline: llama2-7b-f, falcon-7b\n" in out
    assert "named after pipeline.name" not in out
