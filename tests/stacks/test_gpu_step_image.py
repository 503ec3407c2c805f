"""A config whose evaluate jobs run on a GPU instance: the stack builds the GPU variant of the step image
(at deploy time; synth stays offline) and the definition's evaluate steps run it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.planning.plan import build_plan
from stacks.app_builder import AppOptions
from tests.stacks.conftest import SynthesizedApp, synthesize


def _synthesize_sample(repo_root: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> SynthesizedApp:
    """The app synthesized with the sample config plus a judge algorithm, edited by `edit`."""
    config = yaml.safe_load((repo_root / "configs" / "sample.yaml").read_text())
    config["algorithms"].append({"algorithm": "Toxicity"})
    edit(config)
    path = repo_root / "configs" / f".gpu-test-{folder.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        options = AppOptions(environments_file=repo_root / "configs/environments.yaml", config_override=path)
        return synthesize(repo_root, folder / "cdk.out", options)
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def gpu_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    def on_gpu(config: dict[str, Any]) -> None:
        config["pipeline"]["evaluation_instance_type"] = "ml.g5.xlarge"

    return _synthesize_sample(repo_root, tmp_path_factory.mktemp("gpu-app"), on_gpu)


def test_the_gpu_image_is_built_with_cuda_and_run_by_the_evaluate_steps(gpu_app: SynthesizedApp) -> None:
    evaluation = gpu_app.stage.evaluation
    assert evaluation.gpu_step_image is not None
    gpu_hash, cpu_hash = evaluation.gpu_step_image.asset_hash, evaluation.step_image.asset_hash
    assert gpu_hash != cpu_hash
    manifests = [json.loads(p.read_text()) for p in gpu_app.outdir.rglob("*.assets.json")]
    images = {key: value for manifest in manifests for key, value in manifest.get("dockerImages", {}).items()}
    assert images[gpu_hash]["source"].get("dockerBuildArgs") == {"JUDGE_DEVICE": "cuda"}
    assert "dockerBuildArgs" not in images[cpu_hash]["source"]

    template = gpu_app.template(evaluation)
    ((_, pipeline),) = template.find_resources("AWS::SageMaker::Pipeline").items()
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert variables["GpuImageUri"]["Fn::Sub"].endswith(f":{gpu_hash}")
    plan = build_plan(gpu_app.stage.loaded.config)
    on_gpu = {step.name for step in plan.processing_steps if step.instance_type == "ml.g5.xlarge"}
    assert {f"Evaluate-{model.name}" for model in gpu_app.stage.loaded.config.models} <= on_gpu
    for step in json.loads(body)["Steps"]:
        if step["Type"] == "Processing":
            image = step["Arguments"]["AppSpecification"]["ImageUri"]
            assert image == ("${GpuImageUri}" if step["Name"] in on_gpu else "${ImageUri}"), step["Name"]


@pytest.fixture(scope="module")
def mixed_app(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The pipeline's evaluate type stays CPU; one model asks for a GPU in its own evaluation_config."""

    def first_model_on_gpu(config: dict[str, Any]) -> None:
        config["models"][0].setdefault("evaluation_config", {})["evaluation_instance_type"] = "ml.g5.xlarge"

    return _synthesize_sample(repo_root, tmp_path_factory.mktemp("mixed-app"), first_model_on_gpu)


def test_one_gpu_model_builds_the_gpu_image_for_its_evaluate_only(mixed_app: SynthesizedApp) -> None:
    evaluation = mixed_app.stage.evaluation
    assert evaluation.gpu_step_image is not None
    gpu_hash = evaluation.gpu_step_image.asset_hash
    manifests = [json.loads(p.read_text()) for p in mixed_app.outdir.rglob("*.assets.json")]
    images = {key: value for manifest in manifests for key, value in manifest.get("dockerImages", {}).items()}
    assert images[gpu_hash]["source"].get("dockerBuildArgs") == {"JUDGE_DEVICE": "cuda"}
    template = mixed_app.template(evaluation)
    ((_, pipeline),) = template.find_resources("AWS::SageMaker::Pipeline").items()
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert variables["GpuImageUri"]["Fn::Sub"].endswith(f":{gpu_hash}")
    gpu_model = mixed_app.stage.loaded.config.models[0].name
    images_by_step = {
        step["Name"]: step["Arguments"]["AppSpecification"]["ImageUri"]
        for step in json.loads(body)["Steps"]
        if step["Type"] == "Processing"
    }
    assert images_by_step.pop(f"Evaluate-{gpu_model}") == "${GpuImageUri}"
    assert len(images_by_step) > 1
    assert set(images_by_step.values()) == {"${ImageUri}"}


def test_a_cpu_config_builds_no_gpu_image(reference_app: SynthesizedApp) -> None:
    assert reference_app.stage.evaluation.gpu_step_image is None
