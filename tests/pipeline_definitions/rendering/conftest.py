"""Configs, render targets and rendered definitions shared by the definition tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.planning.plan import EvaluationPlan, build_plan
from pipeline_definitions.rendering.sagemaker_definition import RenderTargets, render_definition
from step_code.contract.config import Config

REPO_ROOT = Path(__file__).resolve().parents[3]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
CONFIG_NAMES = ("reference", "sample", "sharded")


def shipped_config(name: str) -> Config:
    return Config.model_validate(yaml.safe_load((REPO_ROOT / "configs" / f"{name}.yaml").read_text()))


def targets_for(config: Config, **overrides: Any) -> RenderTargets:
    values: dict[str, Any] = {
        "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/evalops-dev-steps:3f2a9c",
        "gpu_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/evalops-dev-steps:gpu-8d1e4b",
        "role_arn": "arn:aws:iam::123456789012:role/evalops-dev-pipeline-jobs",
        "artifacts_bucket": "evalops-dev-artifacts-123456789012",
        "code_uri": "s3://evalops-dev-assets-123456789012/5d41402abc4b2a76b9719d911017c592.zip",
        "config_uri": "s3://evalops-dev-artifacts-123456789012/configs/7a1c/config.json",
        "prompt_catalog_uri": "s3://evalops-dev-artifacts-123456789012/prompt-catalog/",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0e7c1c52-9d0f-4d1b-8a7e-1d2c3b4a5f60",
        "region": "eu-west-1",
        "resource_prefix": "evalops-dev-",
        "pipeline_name": f"evalops-dev-{config.pipeline.name}",
    }
    values.update(overrides)
    return RenderTargets(**values)


def all_steps(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level steps and those nested in condition branches."""
    found: list[dict[str, Any]] = []
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        found.append(step)
        if step["Type"] == "Condition":
            pending += step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", [])
    return found


@pytest.fixture(scope="session", params=CONFIG_NAMES)
def config_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def rendered(config_name: str) -> tuple[Config, EvaluationPlan, str]:
    config = shipped_config(config_name)
    plan = build_plan(config)
    return config, plan, render_definition(plan, config, targets_for(config))


@pytest.fixture(scope="session")
def definition(rendered: tuple[Config, EvaluationPlan, str]) -> dict[str, Any]:
    return dict(json.loads(rendered[2]))
