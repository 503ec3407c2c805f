"""Every bad config yields exactly the expected `file:line: key.path: message` lines, all of them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_definitions.loading.loader import ConfigError, load_config
from pipeline_definitions.loading.validation import MAX_MODELS
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
"""
RECORDED = """\
models:
  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}
"""
TAIL = """\
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""
ALGORITHM_NAMES = (
    "FactualKnowledge, QAAccuracy, QAAccuracySemanticRobustness, SummarizationAccuracy, "
    "SummarizationAccuracySemanticRobustness, ClassificationAccuracy, ClassificationAccuracySemanticRobustness, "
    "GeneralSemanticRobustness, PromptStereotyping, Toxicity, QAToxicity, SummarizationToxicity"
)
OPENAI_MODEL = "  - {name: m2, model_provider: openai, endpoint_url: 'http://127.0.0.1:9/v1/chat/completions'}\n"

# (case id, config text, expected lines without the leading "<file>:")
CASES: list[tuple[str, str, list[str]]] = [
    (
        "instance-type-not-ml",
        HEAD
        + RECORDED
        + """\
  - name: m2
    model_id: meta-textgeneration-llama-2-7b-f
    deployment_config:
      instance_type: g5.2xlarge
    evaluation_config: {output: "[0].generated_text"}
"""
        + TAIL,
        ["8: models[1].deployment_config.instance_type: 'g5.2xlarge' is not a SageMaker instance type (expected ml.*)"],
    ),
    (
        "yaml-syntax",
        "pipeline: {name: p}\ndataset:\n  dataset_name: d\n   input_data_location: trivia.jsonl\n",
        ["4: invalid YAML: mapping values are not allowed here"],
    ),
    (
        "yaml-top-level-list",
        "- pipeline\n- dataset\n",
        ["1: expected a mapping of settings (pipeline, dataset, models, ...)"],
    ),
    (
        "unknown-top-level-key",
        HEAD + RECORDED + TAIL + "selections: {primary_metric: factual_knowledge}\n",
        [
            "8: selections: unknown key 'selections' (expected one of: pipeline, dataset, models, model_registry, "
            "algorithms, selection, pricing)"
        ],
    ),
    (
        "missing-and-unknown-dataset-keys",
        """\
pipeline: {name: p}
dataset:
  dataset_name: d
  input_data_location: trivia.jsonl
  target_output_key: answer
  input_key: question
"""
        + RECORDED
        + TAIL,
        [
            "2: dataset.model_input_key: required key 'model_input_key' is missing",
            "6: dataset.input_key: unknown key 'input_key' (expected one of: dataset_name, input_data_location, "
            "dataset_mime_type, model_input_key, target_output_key, category_key, sent_more_input_location, "
            "sent_less_input_location, max_quarantine_fraction)",
        ],
    ),
    (
        "missing-top-level-section",
        HEAD + RECORDED + "model_registry: {model_package_group_name: g}\n",
        ["1: algorithms: required key 'algorithms' is missing"],
    ),
    (
        "mime-type-literal",
        """\
pipeline: {name: p}
dataset:
  dataset_name: d
  input_data_location: trivia.jsonl
  dataset_mime_type: csv
  model_input_key: question
  target_output_key: answer
"""
        + RECORDED
        + TAIL,
        ["5: dataset.dataset_mime_type: expected 'jsonlines' or 'json', got 'csv'"],
    ),
    (
        "parallelism-not-a-number",
        "pipeline: {name: p, parallelism: many}\n" + HEAD.splitlines(keepends=True)[1] + RECORDED + TAIL,
        ["1: pipeline.parallelism: expected a valid integer, got 'many'"],
    ),
    (
        "duplicate-yaml-key",
        """\
pipeline: {name: p}
dataset:
  dataset_name: d
  input_data_location: trivia.jsonl
  model_input_key: question
  dataset_name: d2
  target_output_key: answer
"""
        + RECORDED
        + TAIL,
        ["6: dataset.dataset_name: duplicate key 'dataset_name' (first given on line 3)"],
    ),
    (
        "dataset-file-missing",
        HEAD.replace("trivia.jsonl", "nope.jsonl") + RECORDED + TAIL,
        ["2: dataset.input_data_location: 'nope.jsonl' not found (looked in {ws}/prompt_catalog/ and {ws}/configs/)"],
    ),
    (
        "dataset-outside-catalog",
        HEAD.replace("trivia.jsonl", "../outside.jsonl") + RECORDED + TAIL,
        [
            "2: dataset.input_data_location: '../outside.jsonl' is at {ws}/outside.jsonl, outside the prompt "
            "catalog folder {ws}/prompt_catalog/; steps receive only that folder, so move the file into it or use "
            "an s3:// URI"
        ],
    ),
    (
        "recorded-responses-missing",
        HEAD + "models:\n  - {name: m1, model_provider: recorded, responses_location: recorded/gone.jsonl}\n" + TAIL,
        [
            "4: models[0].responses_location: 'recorded/gone.jsonl' not found "
            "(looked in {ws}/prompt_catalog/recorded/ and {ws}/configs/recorded/)"
        ],
    ),
    (
        "duplicate-model-name",
        HEAD + RECORDED + "  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}\n" + TAIL,
        ["5: models[1].name: duplicate model name 'm1' (also models[0])"],
    ),
    (
        "duplicate-endpoint-name",
        HEAD
        + """\
models:
  - name: m1
    model_id: huggingface-llm-falcon-7b-bf16
    endpoint_name: llm-eval-falcon
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
  - name: m2
    model_id: huggingface-llm-falcon-7b-instruct-bf16
    endpoint_name: llm-eval-falcon
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
"""
        + TAIL,
        [
            "11: models[1].endpoint_name: endpoint name 'llm-eval-falcon' is also the endpoint of models[0] (m1); "
            "every deployed model needs its own endpoint name"
        ],
    ),
    (
        "jumpstart-without-deployment",
        HEAD + "models:\n  - {name: m1, model_id: x, evaluation_config: {output: generated_text}}\n" + TAIL,
        ["4: models[0].deployment_config: deployment_config is required for model_provider 'jumpstart'"],
    ),
    (
        "bedrock-finetuning",
        HEAD
        + """\
models:
  - name: m1
    model_provider: bedrock
    model_id: anthropic.claude-3-haiku-20240307-v1:0
    finetuning:
      train_data_path: train
      parameters: {instance_type: ml.g5.12xlarge}
"""
        + TAIL,
        ["7: models[0].finetuning: finetuning is only supported for jumpstart models, not 'bedrock'"],
    ),
    (
        "both-finetuning-spellings",
        HEAD
        + """\
models:
  - name: m1
    model_id: meta-textgeneration-llama-2-7b
    finetuning: {train_data_path: a, parameters: {instance_type: ml.g5.12xlarge}}
    finetuning_config: {train_data_path: b, parameters: {instance_type: ml.g5.12xlarge}}
"""
        + TAIL,
        ["4: models[0]: give either finetuning or finetuning_config, not both"],
    ),
    (
        "finetuning-alias-key-path",
        HEAD
        + """\
models:
  - name: m1
    model_id: meta-textgeneration-llama-2-7b
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
    finetuning_config:
      train_data_path: train
      parameters:
        instance_type: g5.12xlarge
"""
        + TAIL,
        [
            "11: models[0].finetuning_config.parameters.instance_type: 'g5.12xlarge' is not a SageMaker instance "
            "type (expected ml.*)"
        ],
    ),
    (
        "unknown-algorithm",
        HEAD
        + RECORDED
        + "model_registry: {model_package_group_name: g}\nalgorithms:\n  - algorithm: FactualKnowledgee\n",
        [f"7: algorithms[0].algorithm: unknown algorithm 'FactualKnowledgee' (expected one of: {ALGORITHM_NAMES})"],
    ),
    (
        "algorithm-module-and-config-mismatch",
        HEAD
        + RECORDED
        + """\
model_registry: {model_package_group_name: g}
algorithms:
  - algorithm: FactualKnowledge
    module: fmeval.eval_algorithms.qa_accuracy
    config: QAAccuracyConfig
"""
        + "selection: {primary_metric: factual_knowledge}\n",
        [
            "8: algorithms[0].module: 'fmeval.eval_algorithms.qa_accuracy' is not the module of FactualKnowledge "
            "(expected 'fmeval.eval_algorithms.factual_knowledge')",
            "9: algorithms[0].config: 'QAAccuracyConfig' is not the config class of FactualKnowledge "
            "(expected 'FactualKnowledgeConfig')",
        ],
    ),
    (
        "algorithm-unknown-field-and-bad-choice",
        HEAD
        + RECORDED
        + """\
model_registry: {model_package_group_name: g}
algorithms:
  - algorithm: FactualKnowledge
    target_output_delimeter: "<OR>"
    logical_operator: XOR
"""
        + "",
        [
            "8: algorithms[0].target_output_delimeter: unknown key 'target_output_delimeter' for "
            "FactualKnowledgeConfig (expected one of: target_output_delimiter, logical_operator)",
            "9: algorithms[0].logical_operator: 'XOR' is not one of: OR, AND",
        ],
    ),
    (
        "algorithm-field-types-and-ranges",
        HEAD
        + "models:\n"
        + OPENAI_MODEL
        + """\
model_registry: {model_package_group_name: g}
algorithms:
  - algorithm: GeneralSemanticRobustness
    num_perturbations: five
    whitespace_add_prob: 1.5
    num_baseline_samples: 1
    model_type_for_bertscore: bert-base-uncased
"""
        + "",
        [
            "8: algorithms[0].num_perturbations: 'five' is not an integer",
            "9: algorithms[0].whitespace_add_prob: 1.5 is above the maximum 1",
            "10: algorithms[0].num_baseline_samples: 1 is below the minimum 2",
            "11: algorithms[0].model_type_for_bertscore: 'bert-base-uncased' is not one of: "
            "microsoft/deberta-xlarge-mnli, roberta-large-mnli",
        ],
    ),
    (
        "algorithm-python-only-field",
        HEAD
        + RECORDED
        + """\
model_registry: {model_package_group_name: g}
algorithms:
  - algorithm: ClassificationAccuracy
    converter_fn: my_module.to_label
"""
        + "",
        [
            "8: algorithms[0].converter_fn: converter_fn of ClassificationAccuracyConfig is a Python function; "
            "a config cannot set it"
        ],
    ),
    (
        "prompt-stereotyping-without-sentence-pairs-or-log-probabilities",
        HEAD
        + RECORDED
        + OPENAI_MODEL
        + "model_registry: {model_package_group_name: g}\nalgorithms:\n  - algorithm: PromptStereotyping\n",
        [
            "2: dataset.sent_more_input_location: required by algorithms[0] (PromptStereotyping): JMESPath of the "
            "sentence",
            "2: dataset.sent_less_input_location: required by algorithms[0] (PromptStereotyping): JMESPath of the "
            "sentence",
            "4: models[0].evaluation_config.log_probability: required by algorithms[0] (PromptStereotyping): "
            "JMESPath of the log probability in the response",
            "5: models[1].evaluation_config.log_probability: required by algorithms[0] (PromptStereotyping): "
            "JMESPath of the log probability in the response",
        ],
    ),
    (
        "score-name-clash",
        HEAD
        + RECORDED
        + """\
model_registry: {model_package_group_name: g}
algorithms:
  - algorithm: QAAccuracy
  - algorithm: SummarizationAccuracy
"""
        + "",
        [
            "8: algorithms[1].algorithm: algorithms[0] (QAAccuracy) reports bertscore too; scores are keyed by "
            "name, so keep only one of them"
        ],
    ),
    (
        "selection-unknown-metrics-and-weights",
        HEAD
        + RECORDED
        + TAIL
        + """\
selection:
  primary_metric: exact_inclusion
  weights:
    factual_knowledge: 2
    quasi_exact_inclusion: 1
    factual_knowledge_quasi_exact: -1
"""
        + "",
        [
            "9: selection.primary_metric: 'exact_inclusion' is not a score of the configured algorithms "
            "(expected one of: factual_knowledge, factual_knowledge_quasi_exact)",
            "12: selection.weights.quasi_exact_inclusion: 'quasi_exact_inclusion' is not a score of the configured "
            "algorithms (expected one of: factual_knowledge, factual_knowledge_quasi_exact)",
            "13: selection.weights.factual_knowledge_quasi_exact: weight -1 is negative (lower-is-better scores "
            "are inverted already)",
        ],
    ),
    (
        "selection-all-weights-zero",
        HEAD + RECORDED + TAIL + "selection:\n  weights: {factual_knowledge: 0}\n",
        ["9: selection.weights: at least one weight must be greater than 0"],
    ),
    (
        "toxigen-scores-only",
        HEAD
        + RECORDED
        + "model_registry: {model_package_group_name: g}\nalgorithms:\n  - {algorithm: Toxicity, model_type: toxigen}\n"
        + "selection: {primary_metric: severe_toxicity}\n",
        [
            "8: selection.primary_metric: 'severe_toxicity' is not a score of the configured algorithms "
            "(expected one of: toxicity)"
        ],
    ),
    (
        "pricing-overrides",
        HEAD
        + RECORDED
        + TAIL
        + """\
pricing:
  instance_usd_per_hour:
    g5.2xlarge: 1.5
    ml.g5.4xlarge: -2
  bedrock_usd_per_1k_tokens:
    anthropic.claude-3-haiku-20240307-v1:0: {input: 0.00025}
"""
        + "",
        [
            "10: pricing.instance_usd_per_hour['g5.2xlarge']: 'g5.2xlarge' is not a SageMaker instance type "
            "(expected ml.*)",
            "11: pricing.instance_usd_per_hour['ml.g5.4xlarge']: price -2 USD per hour is negative",
            "13: pricing.bedrock_usd_per_1k_tokens['anthropic.claude-3-haiku-20240307-v1:0']: give both input and "
            "output prices per 1k tokens (missing: output)",
        ],
    ),
    (
        "s3-dataset-with-local-responses-and-finetuning-data",
        """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: s3://team/trivia.jsonl, model_input_key: q, target_output_key: a}
models:
  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}
  - {name: m2, model_provider: recorded, responses_location: s3://team/recorded/m2.jsonl}
  - name: m3
    model_id: meta-textgeneration-llama-2-7b
    finetuning_config:
      train_data_path: train
      validation_data_path: /data/validation
      parameters: {instance_type: ml.g5.12xlarge}
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
  - name: m4
    model_id: meta-textgeneration-llama-2-7b
    finetuning: {train_data_path: "s3://team/train/", parameters: {instance_type: ml.g5.12xlarge}}
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
"""
        + TAIL,
        [
            "4: models[0].responses_location: 'recorded/m1.jsonl' must be an s3:// URI when "
            "dataset.input_data_location is on S3 (the local prompt catalog is not uploaded)",
            "9: models[2].finetuning_config.train_data_path: 'train' must be an s3:// URI when "
            "dataset.input_data_location is on S3 (the local prompt catalog is not uploaded)",
            "10: models[2].finetuning_config.validation_data_path: '/data/validation' must be an s3:// URI when "
            "dataset.input_data_location is on S3 (the local prompt catalog is not uploaded)",
        ],
    ),
    (
        "s3-dataset-with-local-responses-beside-another-error",
        """\
pipeline: {name: p, parallelism: 0}
dataset: {dataset_name: d, input_data_location: s3://team/trivia.jsonl, model_input_key: q, target_output_key: a}
"""
        + RECORDED
        + TAIL,
        [
            "1: pipeline.parallelism: expected greater than or equal to 1, got 0",
            "4: models[0].responses_location: 'recorded/m1.jsonl' must be an s3:// URI when "
            "dataset.input_data_location is on S3 (the local prompt catalog is not uploaded)",
        ],
    ),
    (
        "renderer-placeholder-mark-in-strings",
        """\
pipeline: {name: p, description: "scores for evalops-placeholder-free models"}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
models:
  - name: m1
    model_provider: openai
    endpoint_url: "http://127.0.0.1:9/v1/chat/completions"
    evaluation_config:
      content_template: [{role: user, content: "PROMPT_PLACEHOLDER evalops-placeholder"}]
      inference_parameters: {evalops-placeholder: 1}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge, target_output_delimiter: "<evalops-placeholder>", logical_operator: XOR}
""",
        [
            "1: pipeline.description: 'scores for evalops-placeholder-free models' contains "
            "'evalops-placeholder', which the pipeline renderer reserves for its own placeholders",
            "8: models[0].evaluation_config.content_template[0].content: 'PROMPT_PLACEHOLDER evalops-placeholder' "
            "contains 'evalops-placeholder', which the pipeline renderer reserves for its own placeholders",
            "9: models[0].evaluation_config.inference_parameters['evalops-placeholder']: key 'evalops-placeholder' "
            "contains 'evalops-placeholder', which the pipeline renderer reserves for its own placeholders",
            "12: algorithms[0].target_output_delimiter: '<evalops-placeholder>' contains 'evalops-placeholder', "
            "which the pipeline renderer reserves for its own placeholders",
            "12: algorithms[0].logical_operator: 'XOR' is not one of: OR, AND",
        ],
    ),
    (
        "more-models-than-supported",
        HEAD
        + "models:\n"
        + "".join(
            f"  - {{name: m{index}, model_provider: bedrock, model_id: amazon.titan-text-express-v1}}\n"
            for index in range(MAX_MODELS + 1)
        )
        + TAIL,
        [
            f"3: models: {MAX_MODELS + 1} models; at most {MAX_MODELS} are supported (each adds up to 4 pipeline "
            "steps and the definition must fit SageMaker's 1 MiB), so split them over several configs"
        ],
    ),
    (
        "many-problems-at-once",
        """\
pipeline: {name: p, parallelism: 0}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: "question[", target_output_key: a}
models:
  - {name: m_1, model_provider: recorded, responses_location: recorded/m1.jsonl}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge, logical_operator: xor}
selection: {primary_metric: exact_inclusion}
pricing: {instance_usd_per_hour: {m5.large: 0.1}}
""",
        [
            "1: pipeline.parallelism: expected greater than or equal to 1, got 0",
            "2: dataset.model_input_key: 'question[' is not a valid JMESPath expression (IncompleteExpressionError)",
            "4: models[0].name: 'm_1' is not a valid model name (expected letters, digits and single hyphens, "
            "at most 40 characters)",
            "7: algorithms[0].logical_operator: 'xor' is not one of: OR, AND",
            "8: selection.primary_metric: 'exact_inclusion' is not a score of the configured algorithms "
            "(expected one of: factual_knowledge, factual_knowledge_quasi_exact)",
            "9: pricing.instance_usd_per_hour['m5.large']: 'm5.large' is not a SageMaker instance type (expected ml.*)",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in CASES])
def test_bad_config_reports_every_problem_on_its_line(
    write_config: WriteConfig, workspace: Path, text: str, expected: list[str]
) -> None:
    (workspace / "outside.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = [str(problem) for problem in caught.value.problems]
    assert lines == [f"{path}:{line.format(ws=workspace)}" for line in expected]
    assert str(caught.value) == "\n".join(lines)


def test_there_are_at_least_twenty_bad_configs() -> None:
    assert len(CASES) >= 20
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


def test_missing_file_is_one_line(workspace: Path) -> None:
    path = workspace / "configs" / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}: no such file"]


def test_missing_explicit_catalog_folder(write_config: WriteConfig, workspace: Path) -> None:
    path = write_config(HEAD + RECORDED + TAIL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, catalog_dir=workspace / "nowhere")
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: prompt catalog folder {workspace / 'nowhere'} does not exist",
        f"{path}:2: dataset.input_data_location: 'trivia.jsonl' not found "
        f"(looked in {workspace / 'nowhere'}/ (no such folder) and {workspace}/configs/)",
        f"{path}:4: models[0].responses_location: 'recorded/m1.jsonl' not found "
        f"(looked in {workspace / 'nowhere'}/recorded/ (no such folder) and {workspace}/configs/recorded/)",
    ]
