"""Reading a YAML file is bounded: what would hang or explode is refused with one line, and reporting stays linear."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_definitions.loading.environments import load_environments
from pipeline_definitions.loading.loader import ConfigError, load_config
from pipeline_definitions.loading.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_EXPANDED_NODES
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
"""
REST = """\
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""


def model_with(parameters: str) -> str:
    return f"""\
models:
  - name: m1
    model_provider: recorded
    responses_location: recorded/m1.jsonl
    evaluation_config:
      inference_parameters:
{parameters}
"""


def billion_laughs(levels: int) -> str:
    """Each anchor a list of nine aliases of the one before: 9**levels strings once expanded."""
    lines = ['        l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"        l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + f"\n        all: *l{levels - 1}"


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused_with_one_line(write_config: WriteConfig) -> None:
    path = write_config(HEAD + model_with(billion_laughs(9)) + REST)

    assert len(path.read_bytes()) < 1500
    assert problems(path) == [
        f"{path}:14: YAML aliases expand this value to more than {MAX_EXPANDED_NODES:,} nodes; refused"
    ]


def test_aliases_that_stay_small_are_accepted(write_config: WriteConfig) -> None:
    loaded = load_config(write_config(HEAD + model_with(billion_laughs(3)) + REST))

    assert loaded.config.models[0].evaluation_config.inference_parameters["all"] == [[["lol"] * 9] * 9] * 9


def test_a_cyclic_alias_and_deep_nesting_are_refused(write_config: WriteConfig) -> None:
    cyclic = write_config(HEAD + model_with("        loop: &loop [1, *loop]") + REST, "cyclic.yaml")
    deep = write_config(HEAD + model_with("        deep: " + "[" * 70 + "]" * 70) + REST, "deep.yaml")
    deeper = write_config(HEAD + model_with("        deep: " + "[" * 5000 + "]" * 5000) + REST, "deeper.yaml")

    assert problems(cyclic) == [f"{cyclic}:9: a YAML alias refers to a node that contains it (a cycle); refused"]
    assert problems(deep) == [f"{deep}:9: nested more than {MAX_DEPTH} levels deep (aliases expanded); refused"]
    assert problems(deeper) == [f"{deeper}: nested more than {MAX_DEPTH} levels deep; refused"]


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_without_being_opened(write_config: WriteConfig, workspace: Path) -> None:
    fifo = workspace / "configs" / "fifo.yaml"
    os.mkfifo(fifo)

    assert problems(fifo) == [f"{fifo}: not a regular file (a FIFO); give a YAML file"]
    assert problems(workspace / "configs") == [
        f"{workspace / 'configs'}: not a regular file (a folder); give a YAML file"
    ]
    with pytest.raises(ConfigError, match=r"fifo.yaml: not a regular file \(a FIFO\)"):
        load_environments(fifo)


def test_a_file_over_the_size_cap_is_refused(write_config: WriteConfig) -> None:
    path = write_config(HEAD + "# " + "x" * MAX_BYTES + "\n" + REST)

    assert problems(path) == [f"{path}: larger than {MAX_BYTES // 1024} KiB; a config this large is not read"]


@pytest.mark.timeout(30)
def test_the_environments_file_of_cdk_synth_is_read_with_the_same_limits(workspace: Path) -> None:
    path = workspace / "environments.yaml"
    path.write_text("environments:\n" + billion_laughs(9).replace("        ", "  ") + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_environments(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:7: YAML aliases expand this value to more than {MAX_EXPANDED_NODES:,} nodes; refused"
    ]


# A hang guard, not a speed check: reporting used to compare every problem with every other (69 s at 16k keys).
@pytest.mark.timeout(90)
def test_sixteen_thousand_unknown_keys_give_one_line_each(write_config: WriteConfig) -> None:
    keys = "".join(f"  unknown_{n}: {n}\n" for n in range(16_000))
    path = write_config("pipeline:\n  name: p\n" + keys + HEAD.split("\n", 1)[1] + model_with("        t: 1") + REST)

    found = problems(path)

    assert len(found) == 16_000
    assert found[0].startswith(f"{path}:3: pipeline.unknown_0: unknown key 'unknown_0' (expected one of: name,")
    assert found[-1].startswith(f"{path}:16002: pipeline.unknown_15999: unknown key 'unknown_15999'")


def test_a_merge_key_with_overrides_is_valid_yaml_but_a_real_repeat_is_not(write_config: WriteConfig) -> None:
    base = """\
  - &base
    name: m1
    model_provider: recorded
    responses_location: recorded/m1.jsonl
    evaluation_config: {prompt_template: "Q: $model_input"}
  - <<: *base
    name: m2
    evaluation_config: {prompt_template: "Question: $model_input"}
"""
    loaded = load_config(write_config(HEAD + "models:\n" + base + REST))
    repeated = write_config(HEAD + "models:\n" + base + "    name: m3\n" + REST, "repeated.yaml")

    assert [(m.name, m.evaluation_config.prompt_template) for m in loaded.config.models] == [
        ("m1", "Q: $model_input"),
        ("m2", "Question: $model_input"),
    ]
    assert loaded.config.models[1].responses_location == "recorded/m1.jsonl"
    assert problems(repeated) == [f"{repeated}:12: models[1].name: duplicate key 'name' (first given on line 10)"]


def test_a_long_value_is_cut_in_its_error_line(write_config: WriteConfig) -> None:
    path = write_config(HEAD.replace("name: p", "name: " + "p_" * 500_000) + model_with("        t: 1") + REST)

    [line] = problems(path)
    assert line.startswith(f"{path}:1: pipeline.name: '{'p_' * 29}p...' is not a valid SageMaker pipeline name")
    assert len(line) < 300
