"""Prices (table under config overrides) and the run estimate built from the plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline_definitions.estimating import estimate as est
from pipeline_definitions.loading.loader import load_config
from step_code.contract import pricing
from step_code.contract.pricing import (
    PRICE_TABLE_AS_OF,
    bedrock_usd_per_1k_tokens,
    instance_usd_per_hour,
    price_table,
)
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: p, processing_instance_type: ml.m5.large, evaluation_instance_type: ml.m5.xlarge}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
"""
JUMPSTART = """\
models:
  - name: js
    model_id: meta-textgeneration-llama-2-7b-f
    deployment_config: {instance_type: ml.g5.2xlarge, num_instances: 2}
    evaluation_config: {output: "[0].generated_text", max_concurrency: 10}
"""


def test_price_table_is_dated_and_covers_the_families() -> None:
    table = price_table()
    raw = yaml.safe_load((Path(pricing.__file__).parent / "instance_prices.yaml").read_text(encoding="utf-8"))
    assert PRICE_TABLE_AS_OF == raw["as_of"] == table.as_of
    assert table.region == "us-east-1"
    inference = table.instance_usd_per_hour["inference"]
    for family in ("m5", "c5", "g5", "g6", "inf2", "trn1", "g4dn"):
        assert any(name.startswith(f"ml.{family}.") for name in inference), family
    assert "ml.p4d.24xlarge" in inference
    assert all(price > 0 for usage in table.instance_usd_per_hour.values() for price in usage.values())


def test_overrides_win_over_the_table(write_config: WriteConfig) -> None:
    text = (
        HEAD
        + JUMPSTART
        + (
            "pricing:\n  instance_usd_per_hour: {ml.g5.2xlarge: 2.0, ml.x9.large: 3.0}\n"
            "  bedrock_usd_per_1k_tokens: {my.model: {input: 0.1, output: 0.2}}\n"
        )
    )
    config = load_config(write_config(text)).config
    assert instance_usd_per_hour("ml.g5.2xlarge", config) == 2.0
    assert instance_usd_per_hour("ml.g5.2xlarge", config, "training") == 2.0
    assert instance_usd_per_hour("ml.x9.large", config) == 3.0
    assert (
        instance_usd_per_hour("ml.g5.4xlarge", config)
        == price_table().instance_usd_per_hour["inference"]["ml.g5.4xlarge"]
    )
    assert instance_usd_per_hour("ml.unknown.large", config) is None
    assert bedrock_usd_per_1k_tokens("my.model", config) == {"input": 0.1, "output": 0.2}
    assert bedrock_usd_per_1k_tokens("amazon.nova-micro-v1:0", config) == {"input": 0.000035, "output": 0.00014}
    assert bedrock_usd_per_1k_tokens("nobody.model", config) is None


def test_endpoint_model_estimate(write_config: WriteConfig) -> None:
    text = HEAD + JUMPSTART + "pricing:\n  instance_usd_per_hour: {ml.g5.2xlarge: 2.0}\n"
    loaded = load_config(write_config(text))
    run = est.estimate_run(loaded, 400)
    (row,) = run.models
    evaluation_minutes = 400 * est.SECONDS_PER_CALL / 10 / 60 + est.FMEVAL_FIXED_MINUTES
    endpoint_hours = 2 * (est.DEPLOY_MINUTES + evaluation_minutes) / 60
    assert row.model_calls == 400
    assert row.evaluation_minutes == pytest.approx(evaluation_minutes)
    assert row.endpoint_instance_hours == pytest.approx(endpoint_hours)
    assert row.endpoint_usd == pytest.approx(2.0 * endpoint_hours)
    assert row.kept_endpoint_usd_per_hour is None
    assert [s.step for s in run.steps] == [
        "Preprocess",
        "Deploy-js",
        "Evaluate-js",
        "Cleanup-js",
        "Champion",
        "Select",
        "RegisterWinner",
    ]
    deploy = next(s for s in run.steps if s.step == "Deploy-js")
    assert deploy.minutes == est.DEPLOY_MINUTES + 1
    m5 = price_table().instance_usd_per_hour["processing"]["ml.m5.large"]
    assert deploy.usd == pytest.approx(m5 * deploy.minutes / 60)
    assert run.total_usd == pytest.approx(row.usd + sum(s.usd or 0 for s in run.steps))
    assert run.warnings == ()


def test_unknown_prices_become_warnings_and_kept_endpoints_are_flagged(write_config: WriteConfig) -> None:
    text = HEAD + JUMPSTART.replace("ml.g5.2xlarge", "ml.g7.2xlarge") + "    cleanup_endpoint: false\n"
    run = est.estimate_run(load_config(write_config(text)), None)
    assert run.prompt_count is None
    assert run.prompts == est.PER_PROMPTS_DEFAULT
    (row,) = run.models
    assert row.endpoint_usd is None
    assert not row.priced
    assert row.kept_endpoint_usd_per_hour is None
    assert run.warnings == (
        "no inference price for ml.g7.2xlarge in the price table; set pricing.instance_usd_per_hour.ml.g7.2xlarge "
        "to include it",
    )
    assert "Cleanup-js" not in [s.step for s in run.steps]


def test_finetuning_and_bedrock_estimates(write_config: WriteConfig) -> None:
    text = (
        HEAD
        + """\
models:
  - name: tuned
    model_id: meta-textgeneration-llama-2-7b
    deployment_config: {instance_type: ml.g5.2xlarge}
    evaluation_config: {output: "[0].generated_text"}
    finetuning:
      train_data_path: train
      parameters: {instance_type: ml.g5.12xlarge, num_instances: 2, epoch: 3}
  - name: claude
    model_provider: bedrock
    model_id: anthropic.claude-3-haiku-20240307-v1:0
    evaluation_config: {inference_parameters: {max_tokens: 100}}
"""
    )
    loaded = load_config(write_config(text))
    run = est.estimate_run(loaded, 1000)
    tuned, claude = run.models
    hours = 3 * est.TRAINING_HOURS_PER_EPOCH + est.TRAINING_STARTUP_MINUTES / 60
    assert tuned.training_hours == pytest.approx(hours)
    assert tuned.training_instance_hours == pytest.approx(2 * hours)
    assert tuned.training_usd == pytest.approx(
        2 * hours * price_table().instance_usd_per_hour["training"]["ml.g5.12xlarge"]
    )
    finetune_step = next(s for s in run.steps if s.step == "Finetune-tuned")
    assert finetune_step.minutes == pytest.approx(hours * 60)
    per_call = est.BEDROCK_INPUT_TOKENS * 0.00025 + 100 * 0.00125
    assert claude.token_usd == pytest.approx(1000 * per_call / 1000)
    assert claude.instance_hours == 0


def test_one_call_per_prompt_whatever_the_algorithms_and_none_for_recorded(write_config: WriteConfig) -> None:
    text = """\
pipeline: {name: p}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
models:
  - {name: m1, model_provider: recorded, responses_location: recorded/m1.jsonl}
  - {name: m2, model_provider: openai, endpoint_url: "http://127.0.0.1:9/v1/chat/completions"}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
  - {algorithm: QAAccuracy}
"""
    recorded, live = est.estimate_run(load_config(write_config(text)), 10).models
    assert (recorded.model_calls, live.model_calls) == (0, 10)
    assert recorded.evaluation_minutes == est.FMEVAL_FIXED_MINUTES


def test_kept_endpoint_costs_per_hour_after_the_run(write_config: WriteConfig) -> None:
    text = HEAD + JUMPSTART + "    cleanup_endpoint: false\n"
    (row,) = est.estimate_run(load_config(write_config(text)), 10).models
    price = price_table().instance_usd_per_hour["inference"]["ml.g5.2xlarge"]
    assert row.kept_endpoint_usd_per_hour == pytest.approx(2 * price)


def test_perturbed_prompts_and_sentence_pairs_count_in_calls_time_and_cost(write_config: WriteConfig) -> None:
    text = """\
pipeline: {name: p}
dataset:
  dataset_name: d
  input_data_location: trivia.jsonl
  model_input_key: question
  target_output_key: answer
  sent_more_input_location: more
  sent_less_input_location: less
models:
  - name: live
    model_provider: openai
    endpoint_url: "http://127.0.0.1:9/v1/chat/completions"
    evaluation_config: {max_concurrency: 4, log_probability: "choices[0].logprobs"}
  - name: claude
    model_provider: bedrock
    model_id: anthropic.claude-3-haiku-20240307-v1:0
    evaluation_config: {inference_parameters: {max_tokens: 100}, log_probability: "logprob"}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
  - {algorithm: QAAccuracySemanticRobustness, num_perturbations: 3}
  - {algorithm: GeneralSemanticRobustness}
  - {algorithm: PromptStereotyping}
"""
    live, claude = est.estimate_run(load_config(write_config(text)), 10).models
    # Per record: its own prompt, 3 + 5 (fmeval's default) perturbations and the two sentences of its pair.
    assert est.calls_per_record(load_config(write_config(text)).config) == 1 + 3 + 5 + 2
    assert (live.model_calls, claude.model_calls) == (110, 110)
    assert live.evaluation_minutes == pytest.approx(110 * est.SECONDS_PER_CALL / 4 / 60 + est.FMEVAL_FIXED_MINUTES)
    per_call = est.BEDROCK_INPUT_TOKENS * 0.00025 + 100 * 0.00125
    assert claude.token_usd == pytest.approx(110 * per_call / 1000)
    assert any("num_perturbations perturbed prompts" in line for line in est.ASSUMPTIONS)
