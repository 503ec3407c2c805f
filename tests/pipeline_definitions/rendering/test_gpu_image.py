"""Steps on GPU instances run the GPU variant of the step image; the others keep the CPU image."""

from __future__ import annotations

import json

import pytest

from pipeline_definitions.planning import plan as p
from pipeline_definitions.rendering.definition_placeholders import GPU_IMAGE_URI, IMAGE_URI
from pipeline_definitions.rendering.sagemaker_definition import render_definition, render_for_cloudformation
from step_code.contract.config import Config
from tests.pipeline_definitions.rendering.conftest import all_steps, shipped_config, targets_for

GPU_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/evalops-dev-steps:gpu-77aa"


def _on_gpu() -> Config:
    config = shipped_config("sample")
    pipeline = config.pipeline.model_copy(update={"evaluation_instance_type": "ml.g5.xlarge"})
    return config.model_copy(update={"pipeline": pipeline})


def test_evaluate_steps_on_a_gpu_type_use_the_gpu_image() -> None:
    config = _on_gpu()
    plan = p.build_plan(config)
    text = render_definition(plan, config, targets_for(config, gpu_image_uri=GPU_IMAGE))
    on_gpu = {step.name for step in plan.processing_steps if step.instance_type == "ml.g5.xlarge"}
    assert {name for name in on_gpu if name.startswith("Evaluate-")} == {f"Evaluate-{m.name}" for m in config.models}
    images = {
        step["Name"]: step["Arguments"]["AppSpecification"]["ImageUri"]
        for step in all_steps(json.loads(text))
        if step["Type"] == "Processing"
    }
    for name, image in images.items():
        expected = GPU_IMAGE if name in on_gpu else targets_for(config).image_uri
        assert image == expected, name


def test_a_gpu_step_without_a_gpu_image_is_refused() -> None:
    config = _on_gpu()
    with pytest.raises(
        ValueError, match=r"^step Evaluate-\S+ runs on GPU instance ml\.g5\.xlarge: give gpu_image_uri$"
    ):
        render_definition(p.build_plan(config), config, targets_for(config, gpu_image_uri=None))


def test_the_stack_substitutes_the_gpu_image_only_where_it_is_used() -> None:
    config = _on_gpu()
    definition = render_for_cloudformation(
        p.build_plan(config), config, code_object_key="code.zip", pipeline_name="n", resource_prefix="evalops-dev-"
    )
    assert {IMAGE_URI.variable, GPU_IMAGE_URI.variable} <= set(definition.variables)
    cpu = shipped_config("sample")
    cpu_definition = render_for_cloudformation(
        p.build_plan(cpu), cpu, code_object_key="code.zip", pipeline_name="n", resource_prefix="evalops-dev-"
    )
    assert GPU_IMAGE_URI.variable not in cpu_definition.variables
