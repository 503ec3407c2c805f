"""Values that used to pass validation and then break or silently change the run are refused, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_definitions.loading.hyperparameters import HYPERPARAMETERS, hyperparameter_problem
from pipeline_definitions.loading.loader import ConfigError, load_config
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
"""
RECORDED = "  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}\n"
REST = """\
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""


def finetuned(parameters: str) -> str:
    return f"""\
  - name: ft
    model_id: meta-textgeneration-llama-2-7b
    deployment_config: {{instance_type: ml.g5.2xlarge}}
    evaluation_config: {{output: "[0].generated_text"}}
    finetuning:
      train_data_path: s3://bucket/train/
      parameters: {{instance_type: ml.g5.12xlarge, {parameters}}}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(problem).removeprefix(f"{path}:") for problem in caught.value.problems]


CASES: list[tuple[str, str, list[str]]] = [
    (
        "nan-floor",
        HEAD + "models:\n" + RECORDED + REST + "selection: {min_primary_score: .nan}\n",
        ["8: selection.min_primary_score: expected a finite number, got nan"],
    ),
    (
        "non-finite-anywhere",
        HEAD
        + "models:\n  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl,"
        + " evaluation_config: {inference_parameters: {temperature: .NaN}}}\n"
        + REST
        + "selection: {weights: {exact_inclusion: .inf}}\npricing: {instance_usd_per_hour: {ml.m5.large: -.inf}}\n",
        [
            "4: models[0].evaluation_config.inference_parameters.temperature: expected a finite number, got nan",
            "8: selection.weights.exact_inclusion: expected a finite number, got inf",
            "9: pricing.instance_usd_per_hour['ml.m5.large']: expected a finite number, got -inf",
        ],
    ),
    (
        "boolean-is-not-a-number",
        HEAD.replace("name: p}", "name: p, parallelism: true}") + "models:\n" + RECORDED + REST,
        ["1: pipeline.parallelism: expected a valid integer, got True"],
    ),
    (
        "prompt-templates-as-render-prompt-reads-them",
        HEAD
        + "models:\n"
        + "  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl,"
        + " evaluation_config: {prompt_template: 'Q: $model_input in $language'}}\n"
        + "  - {name: m2, model_provider: recorded, responses_location: recorded/m1.jsonl,"
        + " evaluation_config: {prompt_template: 'Costs $ 5: $model_input'}}\n"
        + REST,
        [
            "4: models[0].evaluation_config.prompt_template: prompt template 'Q: $model_input in $language' has the "
            "unknown placeholder $language (only $model_input is filled in; write $$ for a literal $)",
            "5: models[1].evaluation_config.prompt_template: prompt template 'Costs $ 5: $model_input' is not "
            "valid: Invalid placeholder in string: line 1, col 7 (write $$ for a literal $)",
        ],
    ),
    (
        "content-template-as-the-runners-build-it",
        HEAD
        + "models:\n"
        + RECORDED
        + "  - name: m2\n    model_provider: http\n    endpoint_url: http://127.0.0.1:9/generate\n"
        + '    evaluation_config: {output: "[0].generated_text", content_template: \'{"inputs": PROMPT_PLACEHOLDER\'}\n'
        + REST,
        [
            "8: models[1].evaluation_config.content_template: content template "
            "'{\"inputs\": PROMPT_PLACEHOLDER' starts like JSON but is not valid JSON"
        ],
    ),
    (
        "endpoint-url-must-be-http",
        HEAD
        + "models:\n"
        + RECORDED
        + "  - {name: m2, model_provider: openai, endpoint_url: 'ftp://127.0.0.1/v1/chat/completions'}\n"
        + "  - {name: m3, model_provider: openai, endpoint_url: 'localhost:8080/v1/chat/completions'}\n"
        + "  - {name: m4, model_provider: openai, endpoint_url: 'http://host:port/v1'}\n"
        + REST,
        [
            "5: models[1].endpoint_url: 'ftp://127.0.0.1/v1/chat/completions' is not an http(s) URL "
            "(expected http://host[:port]/path or https://...)",
            "6: models[2].endpoint_url: 'localhost:8080/v1/chat/completions' is not an http(s) URL "
            "(expected http://host[:port]/path or https://...)",
            "7: models[3].endpoint_url: 'http://host:port/v1' is not an http(s) URL "
            "(expected http://host[:port]/path or https://...)",
        ],
    ),
    (
        "jumpstart-hyperparameters",
        HEAD + "models:\n" + finetuned("epoch: -1, learning_rate: 0, instruction_tuned: maybe, lora_r: true") + REST,
        [
            "10: models[0].finetuning.parameters.epoch: expected an integer >= 1, got -1",
            "10: models[0].finetuning.parameters.instruction_tuned: expected true or false, got 'maybe'",
            "10: models[0].finetuning.parameters.learning_rate: expected a number > 0 and <= 1, got 0",
            "10: models[0].finetuning.parameters.lora_r: expected an integer >= 1, got True",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_values_are_refused_one_line_each(write_config: WriteConfig, text: str, expected: list[str]) -> None:
    assert sorted(problems(write_config(text))) == sorted(expected)


def test_good_values_of_the_same_keys_load(write_config: WriteConfig) -> None:
    text = (
        HEAD
        + "models:\n"
        + finetuned('epoch: "3", learning_rate: 0.0002, instruction_tuned: "True", max_input_length: -1, custom: x')
        + "  - {name: m2, model_provider: openai, endpoint_url: 'https://api.example.test/v1/chat/completions',"
        + " evaluation_config: {prompt_template: 'Costs $$5: $model_input'}}\n"
        + REST
        + "selection: {min_primary_score: 0.5}\n"
    )

    loaded = load_config(write_config(text))

    assert loaded.config.selection.min_primary_score == 0.5
    assert loaded.config.models[0].finetuning is not None
    assert loaded.config.models[0].finetuning.parameters.hyperparameters()["epoch"] == "3"


@pytest.mark.parametrize(
    ("catalog", "mime", "expected"),
    [
        ("", "jsonlines", "the catalog is empty (no records); add JSON Lines records, one object per line"),
        ("\n \n", "jsonlines", "the catalog is empty (no records); add JSON Lines records, one object per line"),
        (
            '[\n  {"question": "q", "answer": "a"},\n  {"question": "r", "answer": "b"}\n]\n',
            "jsonlines",
            "the catalog starts with a JSON array, but dataset_mime_type is jsonlines (one object per line); "
            "set dataset_mime_type: json, or write one record per line",
        ),
        ("[]", "json", "the catalog is an empty JSON array (no records)"),
        (
            '{"question": "q", "answer": "a"}\n{"question": "r", "answer": "b"}\n',
            "json",
            "the catalog is not one JSON document (not valid JSON (Extra data at column 1)), as dataset_mime_type "
            "json requires; for one record per line set dataset_mime_type: jsonlines",
        ),
    ],
)
def test_a_catalog_not_in_its_declared_shape_is_refused(
    write_config: WriteConfig, workspace: Path, catalog: str, mime: str, expected: str
) -> None:
    (workspace / "prompt_catalog" / "trivia.jsonl").write_text(catalog, encoding="utf-8")
    text = HEAD.replace("answer}", f"answer, dataset_mime_type: {mime}}}") + "models:\n" + RECORDED + REST

    assert problems(write_config(text)) == [f"2: dataset.input_data_location: {expected}"]


def test_every_hyperparameter_of_the_table_refuses_a_value_of_the_wrong_kind() -> None:
    for name, spec in HYPERPARAMETERS.items():
        assert hyperparameter_problem(name, "not a value") is not None, name
        assert hyperparameter_problem(name, [1]) is not None, name
        if spec.kind != "bool":
            assert hyperparameter_problem(name, True) is not None, name
            assert hyperparameter_problem(name, -2) is not None, name
    assert hyperparameter_problem("some_other_models_parameter", -1) is None
