"""SageMaker runs a processing job with at most 10 inputs, however many models a config compares."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pipeline_definitions.planning import plan as p
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from step_code.contract import files
from step_code.contract.config import Config
from tests.pipeline_definitions.rendering.conftest import all_steps, shipped_config, targets_for

MAX_INPUTS = 10


def many_models(count: int) -> Config:
    """The sample config with `count` recorded models, each reading its responses from the catalog."""
    config = shipped_config("sample")
    template = config.models[0]
    models = [template.model_copy(update={"name": f"candidate-{index:02d}"}) for index in range(count)]
    return config.model_copy(update={"models": models})


def render(config: Config, plan: p.EvaluationPlan | None = None) -> dict[str, Any]:
    return dict(json.loads(render_definition(plan or p.build_plan(config), config, targets_for(config))))


@pytest.mark.parametrize("count", [8, 20])
def test_every_step_fits_the_input_limit_and_waits_for_every_evaluation(count: int) -> None:
    config = many_models(count)
    plan = p.build_plan(config)
    # The plan keeps one input per model (the local runner links each evaluation on its own) ...
    assert len(plan.register.inputs) == 2 + count
    steps = {s["Name"]: s for s in all_steps(render(config, plan)) if s["Type"] == "Processing"}
    # ... and the rendered jobs read them all through one.
    for name, step in steps.items():
        assert len(step["Arguments"]["ProcessingInputs"]) <= MAX_INPUTS, name
    evaluations = [f"Evaluate-candidate-{index:02d}" for index in range(count)]
    assert steps[p.SELECT_STEP]["DependsOn"] == evaluations
    for name in (p.SELECT_STEP, p.REGISTER_STEP):
        summaries = [i for i in steps[name]["Arguments"]["ProcessingInputs"] if i["InputName"] == files.SUMMARIES]
        assert [i["S3Input"]["LocalPath"] for i in summaries] == ["/opt/ml/processing/input/summaries"]
    # Each evaluation lands in the folder select and register read, under the model's name.
    for index, evaluate in enumerate(evaluations):
        (output,) = steps[evaluate]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        assert output["S3Output"]["S3Uri"]["Std:Join"]["Values"][-2:] == ["evaluations", f"candidate-{index:02d}"]


def with_inputs(plan: p.EvaluationPlan, name: str, inputs: tuple[p.StepInput, ...]) -> p.EvaluationPlan:
    steps = tuple(dataclasses.replace(s, inputs=inputs) if s.name == name else s for s in plan.processing_steps)
    changed = {s.name: s for s in steps}
    return dataclasses.replace(
        plan,
        processing_steps=steps,
        preprocess=changed[plan.preprocess.name],
        select=changed[plan.select.name],
        register=changed[plan.register.name],
    )


def test_a_step_over_the_input_limit_is_refused() -> None:
    config = shipped_config("sample")
    plan = p.build_plan(config)
    extra = tuple(p.StepInput(f"extra-{index}", parameter=p.PARAM_PROMPT_CATALOG_URI) for index in range(8))
    crowded = with_inputs(plan, p.PREPROCESS_STEP, (*plan.preprocess.inputs, *extra))
    with pytest.raises(ValueError, match=r"step Preprocess would have 11 processing inputs .* at most 10$"):
        render(config, crowded)


def test_a_summary_must_be_the_evaluation_of_its_own_model() -> None:
    config = many_models(2)
    plan = p.build_plan(config)
    swapped = tuple(
        dataclasses.replace(i, step="Evaluate-candidate-01") if i.name == "summaries/candidate-00" else i
        for i in plan.select.inputs
    )
    with pytest.raises(ValueError, match="summaries/candidate-00 reads Evaluate-candidate-01, not the evaluation"):
        render(config, with_inputs(plan, p.SELECT_STEP, swapped))
