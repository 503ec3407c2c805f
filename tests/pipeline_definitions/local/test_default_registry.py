"""A config without `model_registry` (as the reference sample allows) runs end to end: the winner is registered in
the group named after the pipeline, the group `plan` announced."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline_definitions.cli.main import main
from tests.pipeline_definitions.local.doubles import InstantEvaluate

REGISTRY_SECTION = re.compile(r"^model_registry:\n(?:  .*\n)+\n", re.MULTILINE)


def test_the_winner_goes_to_the_group_named_after_the_pipeline(
    repo_root: Path, instant_evaluate: InstantEvaluate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (repo_root / "configs" / "sample.yaml").read_text(encoding="utf-8")
    config = tmp_path / "no-registry.yaml"
    config.write_text(REGISTRY_SECTION.sub("", text, count=1), encoding="utf-8")
    assert "model_registry" not in config.read_text(encoding="utf-8")
    catalog = ["--catalog-dir", str(repo_root / "prompt_catalog")]

    assert main(["plan", str(config), *catalog]) == 0
    assert "  evalops-sample: " in capsys.readouterr().out

    assert main(["run", str(config), "--local", "--output", str(tmp_path / "run"), *catalog]) == 0
    registration = json.loads(
        (tmp_path / "run/steps/RegisterWinner/output/registration/registration.json").read_text(encoding="utf-8")
    )
    assert registration["model_package_group_name"] == "evalops-sample"
    packages = list((tmp_path / "run/registry/evalops-sample").glob("*"))
    assert packages, "no model package was written in the default group"
