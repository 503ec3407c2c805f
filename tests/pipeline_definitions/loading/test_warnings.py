"""Warnings: the config loads, but a pipeline's fine-tuning job would find no data at a relative path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_definitions.loading.loader import load_config
from tests.pipeline_definitions.conftest import WriteConfig

FINETUNED = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
models:
  - name: tuned
    model_id: meta-textgeneration-llama-2-7b
    finetuning:
      train_data_path: "TRAIN_PATH"
      validation_data_path: "s3://team/validation/"
      parameters: {instance_type: ml.g5.12xlarge}
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""


def _warning(config: Path, line: int, key: str, path: str, catalog: Path, model: int = 0) -> str:
    return (
        f"{config}:{line}: models[{model}].finetuning.{key}: {path!r} is neither a file nor a non-empty folder in the "
        f"prompt catalog folder {catalog}{os.sep}; the training job reads it from the uploaded catalog and would "
        "find no data (add it there or use an s3:// URI)"
    )


def test_reference_config_loads_with_a_warning_for_each_missing_folder(repo_root: Path) -> None:
    path = repo_root / "configs" / "reference.yaml"
    loaded = load_config(path)
    catalog = repo_root / "prompt_catalog"
    assert loaded.warnings == [
        _warning(path, 55, "train_data_path", "train_dataset", catalog, model=2),
        _warning(path, 56, "validation_data_path", "val_dataset", catalog, model=2),
    ]
    finetuning = loaded.config.model("llama2-7b-finetuned").finetuning
    assert finetuning is not None and finetuning.train_data_path == "train_dataset/"


@pytest.mark.parametrize(
    ("train", "warned"),
    [
        ("train", False),
        ("train/", False),
        # The finetune step drops a leading "/" when it joins the path to the catalog prefix.
        ("/train", False),
        ("nested/train.jsonl", False),
        ("s3://team/train/", False),
        ("missing", True),
        ("empty", True),
        # The catalog upload leaves hidden files out, so this folder arrives empty.
        ("hidden-only", True),
        # Exists, but outside the catalog folder the steps receive.
        ("../configs", True),
    ],
)
def test_relative_finetuning_paths_must_name_data_in_the_catalog(
    write_config: WriteConfig, workspace: Path, train: str, warned: bool
) -> None:
    catalog = workspace / "prompt_catalog"
    (catalog / "train").mkdir()
    (catalog / "train" / "part-0.jsonl").write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-8")
    (catalog / "nested").mkdir()
    (catalog / "nested" / "train.jsonl").write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-8")
    (catalog / "empty").mkdir()
    (catalog / "hidden-only").mkdir()
    (catalog / "hidden-only" / ".keep").write_text("", encoding="utf-8")
    path = write_config(FINETUNED.replace("TRAIN_PATH", train))
    loaded = load_config(path)
    assert loaded.warnings == ([_warning(path, 7, "train_data_path", train, catalog)] if warned else [])
    finetuning = loaded.config.model("tuned").finetuning
    # A catalog path naming no file is a folder, spelled with its "/" so the S3 channel prefix ends there.
    folder = not train.endswith(".jsonl") and not train.startswith(("s3://", ".."))
    assert finetuning is not None and finetuning.train_data_path == (train.rstrip("/") + "/" if folder else train)


def test_without_a_prompt_catalog_the_config_folder_is_the_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "team"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "part-0.jsonl").write_text('{"instruction": "q", "response": "a"}\n', encoding="utf-8")
    (folder / "trivia.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    path = folder / "eval.yaml"
    path.write_text(FINETUNED.replace("TRAIN_PATH", "train"), encoding="utf-8")
    assert load_config(path).warnings == []
    path.write_text(FINETUNED.replace("TRAIN_PATH", "train_dataset"), encoding="utf-8")
    assert load_config(path).warnings == [_warning(path, 7, "train_data_path", "train_dataset", folder)]
