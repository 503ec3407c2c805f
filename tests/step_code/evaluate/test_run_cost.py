"""Cost per 1,000 prompts from what the invocation measured, on each pricing basis."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from step_code.contract.config import Config
from step_code.contract.results import Deployment, ModelArtifact
from step_code.invocation import InvocationRecord, InvocationTotals
from step_code.run_cost import estimate_cost
from tests.support.moto_server import MotoServer


def record(index: int, *, cached: bool = False, attempts: int = 1, error: str | None = None) -> InvocationRecord:
    return InvocationRecord(
        record_id=f"r{index}",
        index=index,
        prompt="p",
        model_input="p",
        target_output="t",
        model_output=None if error else "o",
        error=error,
        latency_ms=10.0,
        input_tokens=None if error else 100,
        output_tokens=None if error else 50,
        tokens_estimated=False,
        cached=cached,
        attempts=0 if cached else attempts,
        log_probability=None,
    )


def config_with(models: list[dict[str, Any]], pricing: dict[str, Any] | None = None) -> Config:
    return Config.model_validate(
        {
            "pipeline": {"name": "cost-test"},
            "dataset": {
                "dataset_name": "d",
                "input_data_location": "d.jsonl",
                "model_input_key": "q",
                "target_output_key": "a",
            },
            "models": models,
            "model_registry": {"model_package_group_name": "g"},
            "algorithms": [{"algorithm": "FactualKnowledge"}],
            "pricing": pricing or {},
        }
    )


def totals_of(records: list[InvocationRecord], wall_seconds: float) -> InvocationTotals:
    totals = InvocationTotals()
    for item in records:
        totals.add(item)
    totals.wall_seconds = wall_seconds
    return totals


JUMPSTART = {
    "name": "js",
    "model_id": "meta-textgeneration-llama-3-8b-instruct",
    "deployment_config": {"instance_type": "ml.g5.2xlarge", "num_instances": 2},
    "evaluation_config": {"output": "[0].generated_text"},
}


def test_deployed_endpoints_cost_their_instance_hours_over_the_prompts_sent() -> None:
    config = config_with([JUMPSTART], {"instance_usd_per_hour": {"ml.g5.2xlarge": 1.8}})
    # 90 prompts sent, 10 answered from the cache, in 120 s of invocation.
    result = totals_of([record(i) for i in range(90)] + [record(i, cached=True) for i in range(10)], 120.0)
    deployment = Deployment(
        model="js",
        endpoint_name="e",
        created=True,
        instance_type="ml.g5.2xlarge",
        instance_count=2,
        artifact=ModelArtifact(provider="jumpstart"),
    )
    cost = estimate_cost(config.models[0], config, result, deployment=deployment, sagemaker=None)
    assert (cost.basis, cost.usd_per_hour, cost.instance_count) == ("instance-hours", 1.8, 2)
    assert cost.cost_per_1k_prompts_usd == pytest.approx(1.8 * 2 * (120 / 3600) / 90 * 1000)


def test_a_fully_cached_run_has_no_endpoint_cost_measurement() -> None:
    config = config_with([JUMPSTART], {"instance_usd_per_hour": {"ml.g5.2xlarge": 1.8}})
    result = totals_of([record(i, cached=True) for i in range(5)], 0.01)
    deployment = Deployment(
        model="js", endpoint_name="e", created=True, instance_type="ml.g5.2xlarge", artifact=ModelArtifact(provider="x")
    )
    cost = estimate_cost(config.models[0], config, result, deployment=deployment, sagemaker=None)
    assert cost.basis == "instance-hours" and cost.cost_per_1k_prompts_usd is None


def test_bedrock_costs_its_tokens_per_succeeded_prompt() -> None:
    model = {"name": "br", "model_provider": "bedrock", "model_id": "my.model"}
    config = config_with([model], {"bedrock_usd_per_1k_tokens": {"my.model": {"input": 0.003, "output": 0.015}}})
    result = totals_of([record(0), record(1), record(2, error="boom")], 1.0)
    cost = estimate_cost(config.models[0], config, result, deployment=None, sagemaker=None)
    per_prompt = (100 * 0.003 + 50 * 0.015) / 1000
    assert cost.basis == "per-token"
    assert cost.cost_per_1k_prompts_usd == pytest.approx(per_prompt * 1000)


def test_local_providers_have_no_priced_cost() -> None:
    config = config_with([{"name": "web", "model_provider": "http", "endpoint_url": "http://127.0.0.1:1/generate"}])
    result = totals_of([record(0)], 1.0)
    assert estimate_cost(config.models[0], config, result, deployment=None, sagemaker=None).basis == "none"


def test_an_existing_endpoint_is_priced_from_its_endpoint_config(moto: MotoServer) -> None:
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="m",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/i:1"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="existing-config",
        ProductionVariants=[
            {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 3, "InstanceType": "ml.g4dn.xlarge"}
        ],
    )
    sagemaker.create_endpoint(EndpointName="existing", EndpointConfigName="existing-config")
    model = {
        "name": "ep",
        "model_provider": "endpoint",
        "endpoint_name": "existing",
        "evaluation_config": {"output": "o"},
    }
    config = config_with([model], {"instance_usd_per_hour": {"ml.g4dn.xlarge": 1.0}})
    result = totals_of([record(i) for i in range(10)], 36.0)
    cost = estimate_cost(config.models[0], config, result, deployment=None, sagemaker=sagemaker)
    assert (cost.instance_type, cost.instance_count) == ("ml.g4dn.xlarge", 3)
    assert cost.cost_per_1k_prompts_usd == pytest.approx(1.0 * 3 * 0.01 / 10 * 1000)
    missing = config_with([{**model, "endpoint_name": "gone"}])
    unknown = estimate_cost(missing.models[0], missing, result, deployment=None, sagemaker=sagemaker)
    assert unknown.basis == "instance-hours" and unknown.cost_per_1k_prompts_usd is None
