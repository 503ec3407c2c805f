"""The execution role of a config whose models deploy nothing may still redeploy the approved champion
(selection.baseline: approved): it pulls AWS deep learning containers and reads JumpStart weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stacks import model_access
from stacks.app_builder import AppOptions
from step_code.contract.config import Config
from tests.stacks.conftest import SynthesizedApp, as_list, synthesize
from tests.stacks.test_execution_role import execution_role_statements


@pytest.fixture(scope="module")
def sample_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The sample config: recorded models only, the approved champion as baseline (the default)."""
    options = AppOptions(
        environments_file=repo_root / "configs/environments.yaml", config_override=repo_root / "configs/sample.yaml"
    )
    return synthesize(repo_root, tmp_path_factory.mktemp("sample-app"), options)


def test_only_a_config_gated_on_the_approved_champion_redeploys_it(repo_root: Path) -> None:
    raw = yaml.safe_load((repo_root / "configs" / "sample.yaml").read_text(encoding="utf-8"))
    config = Config.model_validate(raw)
    assert not model_access.deploys_containers(config) and not model_access.deploys_jumpstart(config)
    assert model_access.redeploys_champion(config)
    raw["selection"]["baseline"] = "none"
    assert not model_access.redeploys_champion(Config.model_validate(raw))


def test_the_champion_can_be_redeployed_from_aws_images_and_jumpstart_weights(sample_app: SynthesizedApp) -> None:
    statements = execution_role_statements(sample_app)
    pulls = [r for r in as_list(statements["PullImages"]["Resource"]) if isinstance(r, str)]
    assert pulls and all(r.startswith("arn:aws:ecr:us-east-1:") and r.endswith(":repository/*") for r in pulls)
    reads = as_list(statements["ReadJumpStartArtifacts"]["Resource"])
    assert reads and all(str(r).startswith("arn:aws:s3:::jumpstart-") and str(r).endswith("/*") for r in reads)
