"""Good configs: the shipped ones load, locations resolve, the normalized JSON is what every step reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline_definitions.estimating.estimate import count_prompts
from pipeline_definitions.loading.loader import LoadedConfig, LocationNotFoundError, load_config, repo_root
from pipeline_definitions.loading.validation import MAX_MODELS
from pipeline_definitions.planning.plan import build_plan
from step_code.contract.config import Config
from tests.pipeline_definitions.conftest import WriteConfig

MINIMAL = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
models:
  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""


def _round_trip(loaded: LoadedConfig) -> Config:
    return Config.model_validate_json(loaded.normalized_json())


@pytest.mark.parametrize("name", ["reference", "sample"])
def test_shipped_configs_load_with_the_repo_catalog(repo_root: Path, name: str) -> None:
    loaded = load_config(repo_root / "configs" / f"{name}.yaml")
    catalog = repo_root / "prompt_catalog"
    assert loaded.catalog_dir == catalog
    assert loaded.dataset_location == str(catalog / "evaluation_dataset_trivia.jsonl")
    assert loaded.config.dataset.input_data_location == "evaluation_dataset_trivia.jsonl"
    assert _round_trip(loaded) == loaded.config
    assert loaded.config_sha256 == hashlib.sha256(loaded.normalized_json().encode()).hexdigest()
    assert count_prompts(loaded) == 40


def test_reference_config_keeps_its_meaning(repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "reference.yaml").config
    assert config.dataset.dataset_mime_type == "jsonlines"
    # `$feature` is the reference sample's spelling of the input placeholder.
    assert {m.evaluation_config.prompt_template for m in config.models} == {"$model_input"}
    finetuned = config.model("llama2-7b-finetuned")
    assert finetuned.finetuning is not None
    assert finetuned.finetuning.parameters.hyperparameters() == {
        "chat_dataset": "False",
        "epoch": "1",
        "instruction_tuned": "True",
        "max_input_length": "100",
    }
    normalized = json.loads(load_config(repo_root / "configs" / "reference.yaml").normalized_json())
    assert "$feature" not in json.dumps(normalized)
    # A catalog path that names no file is a folder: the "/" keeps the S3 channel prefix to that folder.
    assert normalized["models"][2]["finetuning"]["train_data_path"] == "train_dataset/"
    assert normalized["algorithms"][0]["target_output_delimiter"] == "<OR>"


def test_sample_recorded_responses_are_relative_to_the_catalog(repo_root: Path) -> None:
    loaded = load_config(repo_root / "configs" / "sample.yaml")
    locations = [m.responses_location for m in loaded.config.models]
    assert locations == [
        "recorded/llama3-8b-instruct.jsonl",
        "recorded/mistral-7b-instruct.jsonl",
        "recorded/falcon-7b-instruct.jsonl",
    ]
    first = "recorded/llama3-8b-instruct.jsonl"
    assert loaded.resolve_location(first) == str(repo_root / "prompt_catalog" / first)


def test_same_file_same_hash_and_changes_change_it(write_config: WriteConfig) -> None:
    first = load_config(write_config(MINIMAL, "a.yaml"))
    again = load_config(write_config(MINIMAL, "b.yaml"))
    changed = load_config(write_config(MINIMAL.replace("{name: p}", "{name: p2}"), "c.yaml"))
    assert first.config_sha256 == again.config_sha256
    assert first.config_sha256 != changed.config_sha256


def test_catalog_is_searched_before_the_config_folder(write_config: WriteConfig, workspace: Path) -> None:
    (workspace / "configs" / "trivia.jsonl").write_text('{"question": "beside", "answer": "x"}\n', encoding="utf-8")
    loaded = load_config(write_config(MINIMAL))
    assert loaded.dataset_location == str(workspace / "prompt_catalog" / "trivia.jsonl")
    assert count_prompts(loaded) == 3


def test_without_a_catalog_folder_files_sit_beside_the_config(tmp_path: Path) -> None:
    folder = tmp_path / "team"
    (folder / "recorded").mkdir(parents=True)
    (folder / "trivia.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    (folder / "recorded" / "m1.jsonl").write_text('{"model_output": "a"}\n', encoding="utf-8")
    config_path = folder / "eval.yaml"
    config_path.write_text(MINIMAL, encoding="utf-8")
    loaded = load_config(config_path)
    assert repo_root(config_path) == folder
    assert loaded.catalog_dir == folder
    assert loaded.dataset_location == str(folder / "trivia.jsonl")
    assert loaded.config.models[0].responses_location == "recorded/m1.jsonl"


def test_explicit_catalog_dir_wins(write_config: WriteConfig, workspace: Path) -> None:
    other = workspace / "other_catalog"
    (other / "recorded").mkdir(parents=True)
    (other / "trivia.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    (other / "recorded" / "m1.jsonl").write_text('{"model_output": "a"}\n', encoding="utf-8")
    loaded = load_config(write_config(MINIMAL), catalog_dir=other)
    assert loaded.catalog_dir == other
    assert loaded.dataset_location == str(other / "trivia.jsonl")
    assert count_prompts(loaded) == 1


def test_s3_locations_pass_through_and_need_no_catalog(tmp_path: Path) -> None:
    config_path = tmp_path / "s3.yaml"
    config_path.write_text(
        MINIMAL.replace("trivia.jsonl", "s3://bucket/prompts/trivia.jsonl").replace(
            "recorded/m1.jsonl", "s3://bucket/recorded/m1.jsonl"
        ),
        encoding="utf-8",
    )
    loaded = load_config(config_path)
    assert loaded.catalog_dir is None
    assert loaded.dataset_location == "s3://bucket/prompts/trivia.jsonl"
    assert loaded.config.models[0].responses_location == "s3://bucket/recorded/m1.jsonl"
    assert loaded.resolve_location("s3://bucket/x.jsonl") == "s3://bucket/x.jsonl"
    assert count_prompts(loaded) is None


def test_resolve_location_names_both_places(write_config: WriteConfig, workspace: Path) -> None:
    loaded = load_config(write_config(MINIMAL))
    with pytest.raises(LocationNotFoundError) as caught:
        loaded.resolve_location("missing.jsonl")
    assert str(caught.value) == (
        f"'missing.jsonl' not found (looked in {workspace}/prompt_catalog/ and {workspace}/configs/)"
    )


def test_json_dataset_counts_array_items(write_config: WriteConfig, workspace: Path) -> None:
    rows = [{"question": f"q{i}", "answer": "a"} for i in range(5)]
    (workspace / "prompt_catalog" / "trivia.json").write_text(json.dumps(rows), encoding="utf-8")
    text = MINIMAL.replace("input_data_location: trivia.jsonl", "input_data_location: trivia.json").replace(
        "{dataset_name: d,", "{dataset_name: d, dataset_mime_type: application/json,"
    )
    loaded = load_config(write_config(text))
    assert loaded.config.dataset.dataset_mime_type == "json"
    assert count_prompts(loaded) == 5
    assert json.loads(loaded.normalized_json())["dataset"]["dataset_mime_type"] == "json"


def test_every_optional_section_reaches_the_normalized_config(write_config: WriteConfig) -> None:
    text = MINIMAL + (
        "selection: {primary_metric: factual_knowledge_quasi_exact, weights: {factual_knowledge: 1}, "
        "max_p95_latency_ms: 900, tie_break: lower_latency}\n"
        "pricing: {instance_usd_per_hour: {ml.m5.large: 0.2}}\n"
    )
    normalized = _round_trip(load_config(write_config(text)))
    assert normalized.selection.primary_metric == "factual_knowledge_quasi_exact"
    assert normalized.selection.weights == {"factual_knowledge": 1.0}
    assert normalized.selection.max_p95_latency_ms == 900
    assert normalized.selection.tie_break == "lower_latency"
    assert normalized.pricing.instance_usd_per_hour == {"ml.m5.large": 0.2}


@pytest.mark.parametrize(
    ("processing", "evaluation"),
    [("ml.m5d.large", "ml.m5d.xlarge"), ("ml.c5d.2xlarge", "ml.c5d.4xlarge"), ("ml.m6id.large", "ml.r5d.2xlarge")],
)
def test_nvme_instance_types_run_the_processing_steps(
    write_config: WriteConfig, processing: str, evaluation: str
) -> None:
    text = MINIMAL.replace(
        "pipeline: {name: p}",
        f"pipeline: {{name: p, processing_instance_type: {processing}, evaluation_instance_type: {evaluation}}}",
    )
    plan = build_plan(load_config(write_config(text)).config)
    assert {step.kind: step.instance_type for step in plan.processing_steps} == {
        "preprocess": processing,
        "evaluate": evaluation,
        # It may evaluate the approved champion again.
        "champion": evaluation,
        "select": processing,
        "register": processing,
    }


def test_the_largest_supported_model_count_loads(write_config: WriteConfig) -> None:
    models = "".join(
        f"  - {{name: m{index}, model_provider: bedrock, model_id: amazon.titan-text-express-v1}}\n"
        for index in range(MAX_MODELS)
    )
    text = MINIMAL.replace(
        "models:\n  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}\n",
        "models:\n" + models,
    )
    assert len(load_config(write_config(text)).config.models) == MAX_MODELS
