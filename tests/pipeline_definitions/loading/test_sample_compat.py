"""The sample's spellings on small configs: register_config, the default registry group, fine-tuning folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_definitions.cli import main as cli
from pipeline_definitions.loading.loader import ConfigError, load_config
from step_code.contract.config import MODEL_PACKAGE_GROUP_NAME_RE
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: PIPELINE}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
models:
  - name: tuned
    model_id: meta-textgeneration-llama-2-7b
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: '[0].generation'}
    finetuning:
      train_data_path: TRAIN
      parameters: {instance_type: ml.g5.12xlarge, epoch: 1}
"""
ALGORITHMS = "algorithms:\n  - {algorithm: FactualKnowledge}\n"


def _config(pipeline: str = "p", train: str = "train", model_extra: str = "") -> str:
    return HEAD.replace("PIPELINE", pipeline).replace("TRAIN", train) + model_extra + ALGORITHMS


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture
def train_folder(workspace: Path) -> Path:
    folder = workspace / "prompt_catalog" / "train"
    folder.mkdir()
    (folder / "data.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    return folder


def test_register_config_names_the_model_group(write_config: WriteConfig, train_folder: Path) -> None:
    path = write_config(_config(model_extra="    register_config: {model_package_group_name: Tuned-Winners}\n"))
    config = load_config(path).config
    assert config.model("tuned").model_package_group_name == "Tuned-Winners"
    assert list(config.model_package_groups()) == ["p", "Tuned-Winners"]


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            "    register_config: {model_package_group_name: Tuned-Winners, approval: Approved}\n",
            "11: models[0].register_config.approval: unknown key 'approval' (expected one of: "
            "model_package_group_name)",
        ),
        (
            "    register_config: {model_package_group_name: bad_name}\n",
            "11: models[0].register_config.model_package_group_name: 'bad_name' is not a valid model package group "
            "name (1-63 letters, digits, hyphens)",
        ),
        (
            "    model_package_group_name: Other\n    register_config: {model_package_group_name: Tuned}\n",
            "12: models[0].register_config.model_package_group_name: 'Tuned' differs from the model's "
            "model_package_group_name 'Other'; give the group once",
        ),
        (
            "    register_config: Tuned\n",
            "11: models[0].register_config: expected a mapping of model_package_group_name, got str",
        ),
    ],
)
def test_a_bad_register_config_is_one_line_on_its_key(
    write_config: WriteConfig, train_folder: Path, extra: str, line: str
) -> None:
    path = write_config(_config(model_extra=extra))
    assert _problems(path) == [f"{path}:{line}"]


def test_without_model_registry_the_group_is_named_after_the_pipeline(
    write_config: WriteConfig, train_folder: Path
) -> None:
    names = []
    for pipeline in ("a" * 70 + "-one", "a" * 70 + "-two", "short"):
        loaded = load_config(write_config(_config(pipeline=pipeline)))
        assert loaded.config.registry_is_default
        names.append(loaded.config.model_registry.model_package_group_name)
        assert json.loads(loaded.normalized_json())["model_registry"]["model_package_group_name"] == names[-1]
    assert names[2] == "short"
    assert names[0] != names[1]
    assert all(len(name) <= 63 and MODEL_PACKAGE_GROUP_NAME_RE.match(name) for name in names)
    assert names[0].startswith("a" * 50)


def test_a_folder_channel_with_a_matching_template_loads_clean(write_config: WriteConfig, train_folder: Path) -> None:
    (train_folder / "template.json").write_text('{"prompt": "Q: {question}", "completion": "{answer}"}')
    loaded = load_config(write_config(_config()))
    assert loaded.warnings == []
    finetuning = loaded.config.model("tuned").finetuning
    assert finetuning is not None and finetuning.train_data_path == "train/"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            '{"prompt": "Q: {query}", "completion": "{answer}"}',
            "uses {query}, which the records of data.jsonl lack (line 1 has: question, answer)",
        ),
        ('{"prompt": "Q: {question}"}', "expected an object with the strings prompt and completion"),
        ('{"prompt": "Q: {question}",\n "completion": }', "invalid JSON at line 2: Expecting value"),
        (
            '{"prompt": "Q: {question", "completion": "{answer}"}',
            "not a valid template (expected '}' before end of string)",
        ),
    ],
)
def test_a_template_the_training_job_could_not_use_is_an_error(
    write_config: WriteConfig, train_folder: Path, template: str, message: str
) -> None:
    (train_folder / "template.json").write_text(template)
    path = write_config(_config())
    assert _problems(path) == [f"{path}:9: models[0].finetuning.train_data_path: train/template.json: {message}"]


def test_a_training_file_beside_a_template_is_warned_about(write_config: WriteConfig, train_folder: Path) -> None:
    (train_folder / "template.json").write_text('{"prompt": "{question}", "completion": "{answer}"}')
    path = write_config(_config(train="train/data.jsonl"))
    loaded = load_config(path)
    assert loaded.warnings == [
        f"{path}:9: models[0].finetuning.train_data_path: the training channel receives 'train/data.jsonl' alone, so "
        "the template.json beside it is not used; name a folder holding both (JumpStart reads the template from the "
        "channel)"
    ]


def test_a_folder_without_json_lines_is_warned_about(write_config: WriteConfig, workspace: Path) -> None:
    folder = workspace / "prompt_catalog" / "train"
    folder.mkdir()
    (folder / "data.csv").write_text("question,answer\nq,a\n")
    path = write_config(_config())
    assert load_config(path).warnings == [
        f"{path}:9: models[0].finetuning.train_data_path: folder 'train' holds no .jsonl or .json data file; "
        "the job would find no records"
    ]


VALIDATION = "      validation_data_path: val\n"


def _with_validation(text: str) -> str:
    return text.replace("      parameters:", VALIDATION + "      parameters:")


def test_validation_records_must_have_the_training_templates_fields(
    write_config: WriteConfig, workspace: Path, train_folder: Path
) -> None:
    (train_folder / "template.json").write_text('{"prompt": "{question}", "completion": "{answer}"}')
    validation = workspace / "prompt_catalog" / "val"
    validation.mkdir()
    (validation / "val.jsonl").write_text('{"question": "q", "reply": "a"}\n', encoding="utf-8")
    path = write_config(_with_validation(_config()))
    assert _problems(path) == [
        f"{path}:10: models[0].finetuning.validation_data_path: train/template.json: uses {{answer}}, which the "
        "records of val.jsonl lack (line 1 has: question, reply)"
    ]


def test_a_template_in_the_validation_folder_is_warned_about(
    write_config: WriteConfig, workspace: Path, train_folder: Path
) -> None:
    validation = workspace / "prompt_catalog" / "val"
    validation.mkdir()
    (validation / "val.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    (validation / "template.json").write_text('{"prompt": "{question}", "completion": "{answer}"}')
    path = write_config(_with_validation(_config()))
    loaded = load_config(path)
    assert loaded.warnings == [
        f"{path}:10: models[0].finetuning.validation_data_path: template.json in 'val' is not read: JumpStart takes "
        "the template from the training channel"
    ]
    finetuning = loaded.config.model("tuned").finetuning
    assert finetuning is not None and (finetuning.train_data_path, finetuning.validation_data_path) == (
        "train/",
        "val/",
    )


def test_plan_lists_s3_channels_as_they_are(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    text = _with_validation(_config(train="s3://team/train/")).replace("trivia.jsonl", "s3://team/eval.jsonl")
    path = write_config(text.replace("validation_data_path: val", "validation_data_path: s3://team/val.jsonl"))
    assert cli.main(["plan", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert (
        "Fine-tuning channels:\n  tuned: training <- s3://team/train/\n  tuned: validation <- s3://team/val.jsonl\n"
    ) in out
    assert (
        "  p: tuned (named after pipeline.name: the config has no model_registry; set model_registry to choose)\n"
        in out
    )
