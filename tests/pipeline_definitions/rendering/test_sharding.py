"""A sharded model in the definition: a K-instance evaluate job over ShardedByS3Key shards, then its merge."""

from __future__ import annotations

import json
from typing import Any

from pipeline_definitions.planning import plan as p
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from tests.pipeline_definitions.rendering.conftest import all_steps, shipped_config, targets_for


def _steps() -> dict[str, dict[str, Any]]:
    config = shipped_config("sharded")
    definition = json.loads(render_definition(p.build_plan(config), config, targets_for(config)))
    return {step["Name"]: step for step in all_steps(definition) if step["Type"] == "Processing"}


def _inputs(step: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["InputName"]: item["S3Input"] for item in step["Arguments"]["ProcessingInputs"]}


def test_a_sharded_model_is_one_job_of_k_instances_each_given_its_share_of_the_shards() -> None:
    steps = _steps()
    outputs = [o["OutputName"] for o in steps["Preprocess"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
    assert outputs == ["dataset", "shards-2", "shards-4"]
    for model, count in (("llama3-8b-instruct", 4), ("mistral-7b-instruct", 2)):
        evaluate = steps[f"Evaluate-{model}"]["Arguments"]
        assert evaluate["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == count
        assert evaluate["AppSpecification"]["ContainerEntrypoint"][-1] == "step_code.evaluate_shards"
        arguments = evaluate["AppSpecification"]["ContainerArguments"]
        # Every shard follows the run's response-cache parameter, as an unsharded evaluate does.
        assert arguments[arguments.index("--response-cache") + 1] == {"Get": "Parameters.ResponseCache"}
        inputs = _inputs(steps[f"Evaluate-{model}"])
        assert inputs["shards"]["S3DataDistributionType"] == "ShardedByS3Key"
        assert inputs["shards"]["S3Uri"] == {
            "Get": f"Steps.Preprocess.ProcessingOutputConfig.Outputs['shards-{count}'].S3Output.S3Uri"
        }
        assert "dataset" not in inputs
        assert all(
            item["S3DataDistributionType"] == "FullyReplicated" for name, item in inputs.items() if name != "shards"
        )
        merge = steps[f"Merge-{model}"]
        assert merge["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
        assert _inputs(merge)["shard-results"]["S3Uri"] == {
            "Get": f"Steps.Evaluate-{model}.ProcessingOutputConfig.Outputs['shard-results'].S3Output.S3Uri"
        }
        # The merge writes where Select reads the model's summary; the shards' results stay out of it.
        merged = merge["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]["Std:Join"]["Values"]
        assert merged[-2:] == ["evaluations", model]
        shard_results = evaluate["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]["Std:Join"]["Values"]
        assert shard_results[-2:] == [f"Evaluate-{model}", "shard-results"]
        assert f"Merge-{model}" in steps["Select"]["DependsOn"]
        assert steps[f"Cleanup-{model}"]["DependsOn"] == [f"Evaluate-{model}"]


def test_one_shard_changes_nothing_in_the_definition() -> None:
    config = shipped_config("sharded")
    unsharded = config.model_copy(
        update={
            "pipeline": config.pipeline.model_copy(update={"shards": 1}),
            "models": [
                m.model_copy(update={"evaluation_config": m.evaluation_config.model_copy(update={"shards": None})})
                for m in config.models
            ],
        }
    )
    explicit_one = unsharded.model_copy(
        update={
            "models": [
                m.model_copy(update={"evaluation_config": m.evaluation_config.model_copy(update={"shards": 1})})
                for m in unsharded.models
            ]
        }
    )
    first = render_definition(p.build_plan(unsharded), unsharded, targets_for(unsharded))
    assert render_definition(p.build_plan(explicit_one), explicit_one, targets_for(explicit_one)) == first
    assert "ShardedByS3Key" not in first and "Merge-" not in first
