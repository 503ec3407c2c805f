"""The plan at scale: shards, requests in flight against the endpoint's instances, wall time and cost."""

from __future__ import annotations

import pytest

from pipeline_definitions.cli.main import main
from pipeline_definitions.estimating import estimate as est
from pipeline_definitions.estimating import scale
from pipeline_definitions.loading.loader import load_config
from step_code.contract.config import AlgorithmConfig
from step_code.contract.pricing import price_table
from tests.pipeline_definitions.conftest import WriteConfig

HEAD = """\
pipeline: {name: p, processing_instance_type: ml.m5.large, evaluation_instance_type: ml.m5.xlarge, shards: 4}
dataset: {dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}
model_registry: {model_package_group_name: g}
algorithms:
  - {algorithm: FactualKnowledge}
models:
  - name: js
    model_id: meta-textgeneration-llama-2-7b-f
    deployment_config: {instance_type: ml.g5.2xlarge, num_instances: 2}
    evaluation_config: {output: "[0].generated_text", max_concurrency: 16}
  - name: chat
    model_provider: openai
    endpoint_url: http://127.0.0.1:9/v1/chat/completions
    evaluation_config: {max_concurrency: 8, shards: 1}
"""


def test_rows_follow_the_stated_rule(write_config: WriteConfig) -> None:
    config = load_config(write_config(HEAD)).config
    js, chat = scale.scale_rows(config, (100_000,))
    # js: 4 shards x 16 = 64 in flight, exactly what 2 instances x 32 serve.
    assert (js.shards, js.requests_in_flight, js.calls_per_endpoint_instance) == (4, 64, 50_000)
    invoke = 100_000 * est.SECONDS_PER_CALL / 64 / 60
    evaluate = scale.JOB_START_MINUTES + invoke + 100_000 / 4 / scale.SCORING_RECORDS_PER_SECOND / 60
    assert js.evaluate_minutes == pytest.approx(evaluate)
    assert js.wall_minutes == pytest.approx(evaluate + scale.JOB_START_MINUTES + scale.MERGE_MINUTES)
    prices = price_table().instance_usd_per_hour
    expected = (
        prices["processing"]["ml.m5.xlarge"] * 4 * evaluate / 60
        + prices["processing"]["ml.m5.large"] * scale.MERGE_MINUTES / 60
        + prices["inference"]["ml.g5.2xlarge"] * 2 * (est.DEPLOY_MINUTES + evaluate) / 60
    )
    assert js.usd == pytest.approx(expected)
    # chat: no endpoint to size, one shard, its own concurrency.
    assert (chat.shards, chat.requests_in_flight, chat.endpoint, chat.calls_per_endpoint_instance) == (1, 8, None, None)
    assert chat.wall_minutes == pytest.approx(chat.evaluate_minutes)
    assert scale.concurrency_warnings(config) == []


def test_plan_warns_when_the_shards_send_more_than_the_endpoint_is_sized_for(write_config: WriteConfig) -> None:
    config = load_config(write_config(HEAD.replace("max_concurrency: 16", "max_concurrency: 17"))).config
    (warning,) = scale.concurrency_warnings(config)
    assert warning.startswith("js: 4 shard(s) x max_concurrency 17 = 68 requests at once, more than 2 endpoint")


def test_the_estimate_counts_every_instance_of_a_sharded_job(write_config: WriteConfig) -> None:
    loaded = load_config(write_config(HEAD))
    estimate = est.estimate_run(loaded, 10_000)
    js = next(m for m in estimate.models if m.model == "js")
    assert js.evaluation_minutes == pytest.approx(10_000 * est.SECONDS_PER_CALL / 64 / 60 + est.FMEVAL_FIXED_MINUTES)
    step = next(s for s in estimate.steps if s.step == "Evaluate-js")
    assert step.minutes == pytest.approx(4 * js.evaluation_minutes)


def test_evalops_plan_prints_the_scale_section(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(HEAD.replace("max_concurrency: 16", "max_concurrency: 2").replace("shards: 4}", "shards: 1}"))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    section = out[out.index("At scale") :]
    (row,) = [line.split() for line in section.splitlines() if line.startswith("  js ") and "1,000,000" in line]
    assert row[:6] == ["js", "1,000,000", "1", "2", "ml.g5.2xlarge", "x2"]
    assert row[6] == "500,000"
    assert "js: at 1,000,000 prompts its evaluate job would run" in section
    assert "past the 24 h limit of a processing job" in section


JUDGED = HEAD.replace(
    "  - {algorithm: FactualKnowledge}\n",
    "  - {algorithm: QAAccuracy}\n"
    "  - {algorithm: Toxicity, model_type: toxigen}\n"
    "  - {algorithm: GeneralSemanticRobustness, perturbation_type: butter_finger, num_perturbations: 2}\n",
)


def test_judge_models_add_their_measured_cpu_time_per_record(write_config: WriteConfig) -> None:
    config = load_config(write_config(JUDGED)).config
    assert [scale.judge_texts_per_record(algorithm) for algorithm in config.algorithms] == [
        {"bertscore": 1},
        {"toxigen": 1},
        {"bertscore": 2},
    ]
    robustness = {"algorithm": "QAAccuracySemanticRobustness", "num_perturbations": 3}
    assert scale.judge_texts_per_record(AlgorithmConfig.model_validate(robustness)) == {"bertscore": 4}
    assert scale.judge_texts_per_record(AlgorithmConfig.model_validate({"algorithm": "Toxicity"})) == {"detoxify": 1}
    rates = scale.JUDGE_TEXTS_PER_SECOND_CPU
    per_record = 3 / rates["bertscore"] + 1 / rates["toxigen"]
    assert scale.judge_seconds_per_record(config) == pytest.approx(per_record)

    plain = load_config(write_config(HEAD)).config
    (judged_js, _), (plain_js, _) = scale.scale_rows(config, (100_000,)), scale.scale_rows(plain, (100_000,))
    # The robustness prompts change the calls; the judge time is what the shards' scoring adds beyond them.
    invoke = judged_js.calls * est.SECONDS_PER_CALL / 64 / 60
    lexical = 100_000 / 4 / scale.SCORING_RECORDS_PER_SECOND / 60
    assert judged_js.evaluate_minutes == pytest.approx(
        scale.JOB_START_MINUTES + invoke + lexical + 100_000 / 4 * per_record / 60
    )
    assert plain_js.evaluate_minutes < judged_js.evaluate_minutes
    # 25,000 records a shard x 6 s of judges each is past a processing job's 24 h limit.
    assert judged_js.over_runtime_limit


def test_on_a_gpu_instance_judge_time_is_left_out_and_said_to_be(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(
        write_config(JUDGED.replace("evaluation_instance_type: ml.m5.xlarge", "evaluation_instance_type: ml.g5.xlarge"))
    ).config
    js, _ = scale.scale_rows(config, (100_000,))
    invoke = js.calls * est.SECONDS_PER_CALL / 64 / 60
    assert js.evaluate_minutes == pytest.approx(
        scale.JOB_START_MINUTES + invoke + 100_000 / 4 / scale.SCORING_RECORDS_PER_SECOND / 60
    )
    assert any("on a GPU instance judge time is not included" in line for line in scale.SCALE_ASSUMPTIONS)


def test_every_judge_an_algorithm_can_run_has_a_measured_cpu_rate() -> None:
    from step_code.contract.algorithms import TOXICITY_MODEL_TYPES, algorithm_names, lookup

    judges: set[str] = set()
    for name in algorithm_names():
        variants = [{"model_type": kind} for kind in TOXICITY_MODEL_TYPES] if lookup(name).scores_by_field else [{}]
        for fields in variants:
            judges |= set(scale.judge_texts_per_record(AlgorithmConfig.model_validate({"algorithm": name, **fields})))
    assert judges == set(scale.JUDGE_TEXTS_PER_SECOND_CPU) == {"bertscore", "detoxify", "toxigen"}
