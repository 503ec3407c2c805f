"""Fixtures for the control-plane steps: a moto SageMaker/S3, the steps' environment, a config and run folders."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline_definitions.planning.plan import PlannedStep, build_plan, step_arguments
from step_code.contract.config import Config
from step_code.contract.files import CONFIG_FILE, CONFIG_INPUT
from step_code.contract.results import (
    AlgorithmResult,
    CostEstimate,
    EvaluationSummary,
    LatencyStats,
    ModelArtifact,
    TokenStats,
)
from tests.step_code.aws.jumpstart_specs import write_catalogue
from tests.support.moto_server import MotoServer

PREFIX = "evalops-test-"
ROLE_ARN = "arn:aws:iam::123456789012:role/evalops-test-steps"
ARTIFACTS_BUCKET = "evalops-test-artifacts"
# As the pipeline sets EVALOPS_ARTIFACTS_URI: the artifacts bucket and the deployed (prefixed) pipeline name.
ARTIFACTS_URI = f"s3://{ARTIFACTS_BUCKET}/{PREFIX}evalops-aws-test"
# Where run_artifacts_uri puts what a run keeps.
RUN_ARTIFACTS = f"{ARTIFACTS_URI}/artifacts"
DATA_URI = "s3://evalops-test-data/datasets"
GROUP = "evalops-test-winners"
# moto's CreateEndpointConfig knows an old instance list without ml.g5.*, so test configs use ml.m5.large.
INSTANCE = "ml.m5.large"

CONFIG: dict[str, Any] = {
    "pipeline": {"name": "evalops-aws-test"},
    "dataset": {
        "dataset_name": "trivia",
        "input_data_location": "trivia.jsonl",
        "model_input_key": "question",
        "target_output_key": "answer",
    },
    "models": [
        {
            "name": "falcon-hf",
            "model_provider": "huggingface",
            "model_id": "tiiuae/falcon-7b-instruct",
            "deployment_config": {"instance_type": INSTANCE},
            "evaluation_config": {"output": "[0].generated_text", "content_template": {"inputs": "PROMPT_PLACEHOLDER"}},
        },
        {
            "name": "llama-base",
            "model_id": "meta-textgeneration-llama-2-7b",
            "deployment_config": {"instance_type": INSTANCE},
            "evaluation_config": {"output": "[0].generated_text", "custom_attributes": {"accept_eula": True}},
        },
        {
            "name": "llama-tuned",
            "model_id": "meta-textgeneration-llama-2-7b",
            "endpoint_name": "llama-tuned-eval",
            "finetuning": {
                "train_data_path": "train",
                "validation_data_path": "s3://evalops-test-data/validation/",
                "parameters": {"instance_type": "ml.m5.xlarge", "epoch": 1, "instruction_tuned": True},
            },
            "deployment_config": {"instance_type": INSTANCE, "num_instances": 2},
            "evaluation_config": {"output": "[0].generated_text", "custom_attributes": {"accept_eula": True}},
        },
        {"name": "titan", "model_provider": "bedrock", "model_id": "amazon.titan-text-express-v1"},
        {
            "name": "existing",
            "model_provider": "endpoint",
            "endpoint_name": "team-llm-prod",
            "evaluation_config": {"output": "generated_text"},
        },
    ],
    "model_registry": {"model_package_group_name": GROUP, "model_package_group_description": "test winners"},
    "algorithms": [{"algorithm": "FactualKnowledge", "target_output_delimiter": "<OR>"}],
}


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The steps' environment against moto; yields a SageMaker client. The artifacts bucket exists."""
    monkeypatch.setenv("EVALOPS_RESOURCE_PREFIX", PREFIX)
    monkeypatch.setenv("EVALOPS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("EVALOPS_ARTIFACTS_URI", ARTIFACTS_URI)
    monkeypatch.setenv("EVALOPS_DATA_URI", DATA_URI)
    monkeypatch.delenv("EVALOPS_EXECUTION_ARN", raising=False)
    monkeypatch.delenv("EVALOPS_KMS_KEY_ARN", raising=False)
    boto3.client("s3").create_bucket(Bucket=ARTIFACTS_BUCKET)
    yield boto3.client("sagemaker")


JUMPSTART_OVERRIDES = ("AWS_JUMPSTART_MANIFEST_LOCAL_ROOT_DIR_OVERRIDE", "AWS_JUMPSTART_SPECS_LOCAL_ROOT_DIR_OVERRIDE")


def _reset_jumpstart_cache() -> None:
    from sagemaker.jumpstart.accessors import JumpStartModelsAccessor

    JumpStartModelsAccessor.reset_cache()


@pytest.fixture
def jumpstart_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK resolves JumpStart models from a local one-model catalogue (see jumpstart_specs.py)."""
    for variable, folder in zip(JUMPSTART_OVERRIDES, write_catalogue(tmp_path / "jumpstart"), strict=True):
        monkeypatch.setenv(variable, str(folder))
    # The SDK caches specs per process; no other test may see this catalogue.
    _reset_jumpstart_cache()
    yield
    _reset_jumpstart_cache()


@pytest.fixture
def no_jumpstart_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """JumpStart specs are unreachable (moto has no JumpStart bucket), as in an account without access."""
    for variable in JUMPSTART_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)
    _reset_jumpstart_cache()


@pytest.fixture(scope="session")
def safety_net(repo_root: Path) -> Any:
    """The Lambda's module, loaded from its asset folder (which is not a package)."""
    name = "evalops_safety_net_index"
    spec = importlib.util.spec_from_file_location(name, repo_root / "stacks" / "safety_net_lambda" / "index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses resolve their annotations through sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def config() -> Config:
    return Config.model_validate(CONFIG)


@dataclass
class RunDirs:
    """One step's container-shaped folders: `<input>/<name>/...` and `<output>/<name>/...`."""

    input_root: Path
    output_root: Path
    registry: Path

    def argv(self, step: PlannedStep, execution_id: str, *, local_registry: bool = False) -> list[str]:
        args = step_arguments(
            step,
            str(self.input_root),
            str(self.output_root),
            execution_id=execution_id,
            approval_status="Approved",
            cache_uri=str(self.output_root / "cache"),
            local_registry_dir=str(self.registry) if local_registry else None,
        )
        return [str(arg) for arg in args]

    def put_input(self, name: str, file_name: str, text: str) -> Path:
        path = self.input_root / name / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def output(self, name: str, file_name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.output_root / name / file_name).read_text(encoding="utf-8"))
        return loaded


@pytest.fixture
def run_dirs(tmp_path: Path, config: Config) -> RunDirs:
    dirs = RunDirs(tmp_path / "input", tmp_path / "output", tmp_path / "registry")
    dirs.put_input(CONFIG_INPUT, CONFIG_FILE, json.dumps(CONFIG, indent=2))
    return dirs


def planned_step(config: Config, name: str) -> PlannedStep:
    return build_plan(config).step(name)


def make_summary(
    model: str, artifact: ModelArtifact, metrics: dict[str, float | None], execution_id: str
) -> EvaluationSummary:
    return EvaluationSummary(
        model=model,
        provider=artifact.provider,
        model_identity=f"{artifact.provider}|{artifact.model_id}",
        dataset_sha256="ab" * 32,
        records_total=40,
        records_succeeded=39,
        records_failed=1,
        model_calls=40,
        cache_hits=0,
        latency=LatencyStats(p50_ms=300.0, p95_ms=820.5),
        tokens=TokenStats(input_total=400, output_total=800),
        metrics=metrics,
        algorithms=[
            AlgorithmResult(
                algorithm="FactualKnowledge",
                eval_name="factual_knowledge",
                scores=metrics,
                output_path="algorithms/factual_knowledge.json",
                report_path="algorithms/factual_knowledge.html",
            )
        ],
        cost=CostEstimate(basis="instance-hours", usd_per_hour=1.5, cost_per_1k_prompts_usd=0.42),
        artifact=artifact,
        execution_id=execution_id,
    )
