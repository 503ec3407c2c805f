"""Cross-field checks called directly: step names on hand-made plans, the shipped configs, resource names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.loading.validation import Finding, step_name_findings, validate
from pipeline_definitions.planning.plan import build_plan
from step_code.contract.naming import resource_base


def test_step_names_longer_than_64_or_with_bad_characters_are_reported(repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "sample.yaml").config
    plan = build_plan(config)
    evaluate = plan.branches[1].steps[0]
    long_name = replace(evaluate, name="Evaluate-" + "x" * 56)
    dotted = replace(plan.preprocess, name="Pre.process")
    broken = replace(plan, processing_steps=(dotted, long_name, *plan.processing_steps[1:]))
    assert step_name_findings(config, broken) == [
        Finding(
            ("pipeline", "name"),
            "step name 'Pre.process' is not a valid SageMaker step name (expected at most 64 letters, digits, "
            "'-' or '_')",
        ),
        Finding(
            ("models", 1, "name"),
            f"step name {long_name.name!r} is not a valid SageMaker step name (expected at most 64 letters, "
            "digits, '-' or '_')",
        ),
    ]
    assert step_name_findings(config, plan) == []


def test_shipped_configs_have_no_findings(repo_root: Path) -> None:
    for name in ("reference", "sample"):
        assert validate(load_config(repo_root / "configs" / f"{name}.yaml").config) == []


def test_resource_base_is_the_endpoint_name_or_pipeline_and_model(repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "reference.yaml").config
    assert resource_base(config.pipeline.name, config.models[0]) == "llm-eval-meta-textgeneration-llama-2-7b-f"
    unnamed = config.models[0].model_copy(update={"endpoint_name": None})
    assert resource_base(config.pipeline.name, unnamed) == "llm-evaluation-multi-models-hybrid-llama2-7b-f"
