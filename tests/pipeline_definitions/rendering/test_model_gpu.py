"""One model's Evaluate on a GPU instance (evaluation_config.evaluation_instance_type) while the others stay on
the pipeline's CPU type: only that step runs the GPU image, and the estimate prices it at the GPU rate."""

from __future__ import annotations

import json

import pytest

from pipeline_definitions.estimating import scale
from pipeline_definitions.estimating.estimate import estimate_run
from pipeline_definitions.loading.loader import ConfigError, load_config
from pipeline_definitions.planning import plan as p
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from step_code.contract.pricing import instance_usd_per_hour
from tests.pipeline_definitions.conftest import WriteConfig
from tests.pipeline_definitions.rendering.conftest import all_steps, targets_for

GPU_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/evalops-dev-steps:gpu-77aa"

MIXED = """\
pipeline: {{name: p, evaluation_instance_type: ml.m5.xlarge}}
dataset: {{dataset_name: d, input_data_location: trivia.jsonl, model_input_key: question, target_output_key: answer}}
model_registry: {{model_package_group_name: g}}
algorithms:
  - {{algorithm: {algorithm}}}
models:
  - {{name: on-cpu, model_provider: recorded, responses_location: recorded/m1.jsonl}}
  - name: on-gpu
    model_provider: recorded
    responses_location: recorded/m1.jsonl
    evaluation_config: {{evaluation_instance_type: ml.g5.xlarge, shards: 2}}
"""


def test_only_the_gpu_models_evaluate_runs_the_gpu_image(write_config: WriteConfig) -> None:
    config = load_config(write_config(MIXED.format(algorithm="Toxicity"))).config
    plan = p.build_plan(config)
    types = {step.name: step.instance_type for step in plan.processing_steps}
    assert types["Evaluate-on-gpu"] == "ml.g5.xlarge"
    assert types["Evaluate-on-cpu"] == "ml.m5.xlarge"
    # The merge of the GPU model's shards aggregates on the small CPU instance.
    assert types["Merge-on-gpu"] == config.pipeline.processing_instance_type
    definition = json.loads(render_definition(plan, config, targets_for(config, gpu_image_uri=GPU_IMAGE)))
    processing = {step["Name"]: step["Arguments"] for step in all_steps(definition) if step["Type"] == "Processing"}
    images = {name: arguments["AppSpecification"]["ImageUri"] for name, arguments in processing.items()}
    assert images.pop("Evaluate-on-gpu") == GPU_IMAGE
    assert set(images.values()) == {targets_for(config).image_uri}
    cluster = processing["Evaluate-on-gpu"]["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["InstanceCount"]) == ("ml.g5.xlarge", 2)
    assert processing["Evaluate-on-cpu"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"


def test_the_estimate_prices_the_gpu_evaluate_at_the_gpu_rate(write_config: WriteConfig) -> None:
    loaded = load_config(write_config(MIXED.format(algorithm="Toxicity")))
    steps = {step.step: step for step in estimate_run(loaded, 1_000).steps}
    gpu_rate = instance_usd_per_hour("ml.g5.xlarge", loaded.config, "processing")
    assert gpu_rate is not None and gpu_rate > 0
    gpu_step = steps["Evaluate-on-gpu"]
    assert gpu_step.instance_type == "ml.g5.xlarge"
    assert gpu_step.usd == pytest.approx(gpu_rate * gpu_step.instance_hours)
    assert steps["Evaluate-on-cpu"].instance_type == "ml.m5.xlarge"
    rows = {row.model: row for row in scale.scale_rows(loaded.config, (100_000,))}
    assert (rows["on-gpu"].evaluate_instance_type, rows["on-cpu"].evaluate_instance_type) == (
        "ml.g5.xlarge",
        "ml.m5.xlarge",
    )


def test_a_gpu_type_for_a_model_without_a_judge_model_is_refused(write_config: WriteConfig) -> None:
    path = write_config(MIXED.format(algorithm="FactualKnowledge"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:11: models[1].evaluation_config.evaluation_instance_type: ml.g5.xlarge is a GPU instance, but no "
        "configured algorithm scores with a judge model (BERTScore, Detoxify or ToxiGen): the GPU would sit idle; "
        "use a CPU type such as ml.m5.xlarge"
    ]


def test_a_models_instance_type_is_checked_like_the_pipelines(write_config: WriteConfig) -> None:
    path = write_config(MIXED.format(algorithm="Toxicity").replace("ml.g5.xlarge", "g5.xlarge"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"{path}:11: models[1].evaluation_config.evaluation_instance_type: ")
    assert "'g5.xlarge' is not a SageMaker instance type (expected ml.*)" in str(problem)
