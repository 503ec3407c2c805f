"""`shards: auto`: the loader turns it into a shard count from the local catalog's prompt count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_definitions.cli import main as cli
from pipeline_definitions.loading.loader import ConfigError, load_config
from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from step_code.contract.sharding import auto_shard_count
from tests.pipeline_definitions.rendering.conftest import all_steps, targets_for

CONFIG = """\
pipeline: {{name: p, shards: {pipeline_shards}}}
dataset: {{dataset_name: d, input_data_location: {catalog}, model_input_key: question, target_output_key: answer}}
models:
  - {{name: by-default, model_provider: recorded, responses_location: s3://bucket/recorded/a.jsonl}}
  - name: explicit
    model_provider: recorded
    responses_location: s3://bucket/recorded/b.jsonl
    evaluation_config: {{shards: 2}}
  - name: own-auto
    model_provider: recorded
    responses_location: s3://bucket/recorded/c.jsonl
    evaluation_config: {{shards: auto}}
model_registry: {{model_package_group_name: g}}
algorithms:
  - {{algorithm: FactualKnowledge}}
"""


def _write(tmp_path: Path, catalog: str, pipeline_shards: str = "auto") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(pipeline_shards=pipeline_shards, catalog=catalog), encoding="utf-8")
    return path


def _jsonlines_catalog(tmp_path: Path, records: int) -> str:
    row = '{"question": "q", "answer": "a"}\n'
    # Blank lines are no prompts: preprocess skips them, so auto does not count them.
    (tmp_path / "prompts.jsonl").write_text((row + "\n") * records, encoding="utf-8")
    return "prompts.jsonl"


@pytest.mark.parametrize(
    ("records", "shards"), [(1, 1), (25_000, 1), (25_001, 2), (100_000, 4), (1_000_000, 40), (10_000_000, 64)]
)
def test_the_rule_is_one_shard_per_25000_prompts_capped_at_64(records: int, shards: int) -> None:
    assert auto_shard_count(records) == shards


def test_auto_becomes_the_count_in_the_plan_and_the_rendered_instance_count(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, _jsonlines_catalog(tmp_path, 50_001)))
    config = loaded.config
    assert config.pipeline.shards == 3
    assert [m.evaluation_config.shards for m in config.models] == [None, 2, 3]
    assert json.loads(loaded.normalized_json())["pipeline"]["shards"] == 3
    assert loaded.auto_shards == "shards: auto -> 3 (50,001 prompts; ceil(prompts / 25,000), 1 to 64)"

    plan = build_plan(config)
    evaluates = {s.model: s for branch in plan.branches for s in branch.steps if s.name.startswith("Evaluate-")}
    assert {m: s.instance_count for m, s in evaluates.items()} == {"by-default": 3, "explicit": 2, "own-auto": 3}

    definition = json.loads(render_definition(plan, config, targets_for(config)))
    counts = {
        step["Name"]: step["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        for step in all_steps(definition)
        if step["Name"].startswith("Evaluate-")
    }
    assert counts == {"Evaluate-by-default": 3, "Evaluate-explicit": 2, "Evaluate-own-auto": 3}


def test_a_json_catalog_counts_its_array_items(tmp_path: Path) -> None:
    (tmp_path / "prompts.json").write_text(json.dumps([{"question": "q", "answer": "a"}] * 3), encoding="utf-8")
    text = CONFIG.format(pipeline_shards="auto", catalog="prompts.json").replace(
        "target_output_key: answer}", "target_output_key: answer, dataset_mime_type: json}"
    )
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded.config.pipeline.shards == 1
    assert loaded.auto_shards == "shards: auto -> 1 (3 prompts; ceil(prompts / 25,000), 1 to 64)"


def test_auto_is_refused_for_a_catalog_on_s3_with_one_line_per_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "s3://bucket/prompts.jsonl")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    expected = (
        "auto needs the prompt count, and the catalog s3://bucket/prompts.jsonl is on S3 (not read offline): "
        "give a number from 1 to 64"
    )
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:1: pipeline.shards: {expected}",
        f"{path}:12: models[2].evaluation_config.shards: {expected}",
    ]


def test_a_number_with_an_s3_catalog_needs_no_count(tmp_path: Path) -> None:
    text = CONFIG.format(pipeline_shards=5, catalog="s3://bucket/prompts.jsonl").replace("shards: auto", "shards: 4")
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    loaded = load_config(tmp_path / "c.yaml")
    assert [m.shard_count(loaded.config.pipeline) for m in loaded.config.models] == [5, 2, 4]
    assert loaded.auto_shards is None


@pytest.mark.parametrize("value", ["0", "65", "many", "true"])
def test_a_bad_shard_count_is_one_line(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, _jsonlines_catalog(tmp_path, 1), pipeline_shards=value)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"{path}:1: pipeline.shards: ")
    assert "expected a whole number from 1 to 64, or auto (ceil(prompts / 25,000), 1 to 64)" in str(problem)


def test_plan_states_the_resolved_count_and_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _jsonlines_catalog(tmp_path, 50_001))
    assert cli.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\nshards: auto -> 3 (50,001 prompts; ceil(prompts / 25,000), 1 to 64)\n" in out
    assert "  Evaluate-own-auto " in out and "  Merge-own-auto " in out
