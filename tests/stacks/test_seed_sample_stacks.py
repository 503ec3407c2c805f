"""A reference-sample config without model_registry and with a per-model register_config, synthesized: the Registry
stack creates both groups and the execution role may register in both (the groups come from the config)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stacks.app_builder import AppOptions
from tests.stacks.conftest import SynthesizedApp, policy_statements, synthesize
from tests.support.seed_sample import sample_s3_layout, seed_sample_dir

CONFIG = "sm_pipelines__pipeline_finetuning_config.yaml"
DEFAULT_GROUP = "llm-evaluation-single-model-finetuning"
MODEL_GROUP = "FMEvaluationFineTunedModel"


@pytest.fixture(scope="module")
def seed_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The sample's config file, byte for byte, in a throw-away repository whose catalog is laid out as its bucket."""
    folder = tmp_path_factory.mktemp("seed-app")
    (folder / "cdk.json").write_text("{}\n", encoding="utf-8")
    (folder / "configs").mkdir()
    shutil.copyfile(seed_sample_dir() / "configs" / CONFIG, folder / "configs" / CONFIG)
    sample_s3_layout(folder / "prompt_catalog")
    options = AppOptions(
        environments_file=repo_root / "configs/environments.yaml", config_override=folder / "configs" / CONFIG
    )
    return synthesize(repo_root, folder / "cdk.out", options)


def test_the_registry_stack_creates_the_default_and_the_register_config_group(seed_app: SynthesizedApp) -> None:
    template = seed_app.template(seed_app.stage.registry)
    groups = template.find_resources("AWS::SageMaker::ModelPackageGroup")
    assert sorted(g["Properties"]["ModelPackageGroupName"] for g in groups.values()) == [MODEL_GROUP, DEFAULT_GROUP]
    assert {g["DeletionPolicy"] for g in groups.values()} == {"Retain"}


def test_the_execution_role_may_register_in_both_groups(seed_app: SynthesizedApp) -> None:
    template = seed_app.template(seed_app.stage.evaluation)
    [statement] = [s for _, s in policy_statements(template) if s.get("Sid") == "RegisterWinners"]
    resources = [str(resource) for resource in statement["Resource"]]
    # SageMaker writes its ARNs in lower case.
    for group in (DEFAULT_GROUP.lower(), MODEL_GROUP.lower()):
        assert any(f":model-package-group/{group}'" in resource for resource in resources), group
        assert any(f":model-package/{group}/*'" in resource for resource in resources), group
