"""What one evaluation's model calls cost, per 1,000 prompts, for the selection policy's cost limit.

- Endpoints (deployed by this run, or an existing `endpoint`): instance-hours.
  cost per 1k prompts = USD/hour * instance count * (invocation wall seconds / 3600) / prompts sent * 1000.
  The wall time is that of this run's invocation phase at the configured concurrency, and "prompts sent"
  counts the records answered by the model in this run (cache hits cost no endpoint time and would
  dilute the figure). When every answer came from the cache there is no measurement and the cost is None.
- Bedrock: per token. cost per 1k prompts = (input tokens * input rate + output tokens * output rate)
  / 1000 / succeeded prompts * 1000, with the tokens of every succeeded record (a cached answer still
  stands for what the prompt costs).
- http, openai, recorded: no AWS charge this platform can price; basis "none".
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code.contract import pricing
from step_code.contract.config import Config, ModelConfig
from step_code.contract.results import CostEstimate, Deployment
from step_code.invocation import InvocationTotals

logger = logging.getLogger(__name__)

PER_THOUSAND = 1000.0
SECONDS_PER_HOUR = 3600.0


def endpoint_instances(sagemaker: Any, endpoint_name: str) -> tuple[str, int] | None:
    """(instance type, instance count) of an existing endpoint's first variant, or None when unreadable."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    except (ClientError, BotoCoreError) as exc:
        logger.warning("cannot read the instances of endpoint %s for the cost estimate: %s", endpoint_name, exc)
        return None
    variants = endpoint_config.get("ProductionVariants") or []
    if not variants or "InstanceType" not in variants[0]:
        return None
    current = (endpoint.get("ProductionVariants") or [{}])[0]
    count = int(current.get("CurrentInstanceCount") or variants[0].get("InitialInstanceCount") or 1)
    return str(variants[0]["InstanceType"]), count


def instance_hours_cost(
    instance_type: str, instance_count: int, config: Config, result: InvocationTotals
) -> CostEstimate:
    usd_per_hour = pricing.instance_usd_per_hour(instance_type, config)
    sent = result.sent
    cost = None
    if usd_per_hour is not None and sent > 0:
        hours = usd_per_hour * instance_count * (result.wall_seconds / SECONDS_PER_HOUR)
        cost = hours / sent * PER_THOUSAND
    return CostEstimate(
        basis="instance-hours",
        usd_per_hour=usd_per_hour,
        instance_type=instance_type,
        instance_count=instance_count,
        cost_per_1k_prompts_usd=cost,
    )


def per_token_cost(model_id: str, config: Config, result: InvocationTotals) -> CostEstimate:
    rates = pricing.bedrock_usd_per_1k_tokens(model_id, config)
    succeeded = result.succeeded
    cost = None
    if rates is not None and succeeded:
        tokens = result.token_stats()
        total = (tokens.input_total * rates["input"] + tokens.output_total * rates["output"]) / PER_THOUSAND
        cost = total / succeeded * PER_THOUSAND
    return CostEstimate(basis="per-token", cost_per_1k_prompts_usd=cost)


def estimate_cost(
    model: ModelConfig,
    config: Config,
    result: InvocationTotals,
    *,
    deployment: Deployment | None,
    sagemaker: Any | None,
) -> CostEstimate:
    """`sagemaker` (a boto3 client) is only used for an existing endpoint, to read its instances."""
    if deployment is not None and deployment.instance_type:
        return instance_hours_cost(deployment.instance_type, deployment.instance_count, config, result)
    if model.provider.existing_endpoint and model.endpoint_name and sagemaker is not None:
        instances = endpoint_instances(sagemaker, model.endpoint_name)
        if instances is not None:
            return instance_hours_cost(instances[0], instances[1], config, result)
        return CostEstimate(basis="instance-hours")
    if model.provider.pricing == "bedrock-tokens" and model.model_id:
        return per_token_cost(model.model_id, config, result)
    return CostEstimate(basis="none")
