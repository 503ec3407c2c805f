"""The environment's guardrails as request fields of what the control-plane steps create.

The pipeline passes them to the step's job as environment variables (`step_code/contract/job_env.py`,
`JobGuardrails`); a local run sets none, and then only the run's own tags go on. Each function returns the
fields for one kind of request, to be spread into the create call.
"""

from __future__ import annotations

import os
from typing import Any

from step_code.contract.job_env import JobGuardrails


def job_guardrails() -> JobGuardrails:
    return JobGuardrails.from_environment(os.environ)


def supports_volume_key(instance_type: str) -> bool:
    """SageMaker refuses a volume key for instance types with local NVMe storage, which their hardware encrypts."""
    from sagemaker.utils import instance_supports_kms

    return bool(instance_supports_kms(instance_type))


def with_extra_tags(tags: list[dict[str, str]], guardrails: JobGuardrails) -> list[dict[str, str]]:
    """The run's tags, then the environment's extra ones; the run's win a key both use (the SDK's rule for its
    defaults-file tags), because the safety net and endpoint reuse read them."""
    keys = {tag["Key"] for tag in tags}
    return [*tags, *({"Key": key, "Value": value} for key, value in guardrails.tags if key not in keys)]


def training_estimator_settings(guardrails: JobGuardrails, instance_type: str) -> dict[str, Any]:
    """Keyword arguments of the SDK's estimator (JumpStartEstimator) for the training job."""
    settings: dict[str, Any] = {"output_kms_key": guardrails.training_output_kms_key}
    if guardrails.training_volume_kms_key and supports_volume_key(instance_type):
        settings["volume_kms_key"] = guardrails.training_volume_kms_key
    if guardrails.training_vpc is not None:
        settings["subnets"] = list(guardrails.training_vpc.subnets)
        settings["security_group_ids"] = list(guardrails.training_vpc.security_group_ids)
    # Only ever switched on: a JumpStart model whose specs require isolation keeps it whatever we say.
    if guardrails.training_network_isolation:
        settings["enable_network_isolation"] = True
    if guardrails.training_inter_container_encryption:
        settings["encrypt_inter_container_traffic"] = True
    return settings


def warm_pool_keep_alive(guardrails: JobGuardrails, configured: int | None) -> int | None:
    """The training job's KeepAlivePeriodInSeconds: the fine-tuning's own value (0 too), else the environment's."""
    return configured if configured is not None else guardrails.warm_pool_keep_alive_seconds


def model_settings(guardrails: JobGuardrails, *, model_requires_isolation: bool) -> dict[str, Any]:
    """CreateModel fields: VpcConfig and EnableNetworkIsolation (on when the model's specs or the environment ask)."""
    settings: dict[str, Any] = {
        "EnableNetworkIsolation": model_requires_isolation or guardrails.model_network_isolation
    }
    if guardrails.model_vpc is not None:
        settings["VpcConfig"] = guardrails.model_vpc.api()
    return settings


def endpoint_config_settings(guardrails: JobGuardrails, instance_type: str) -> dict[str, Any]:
    """CreateEndpointConfig fields: KmsKeyId, the key of the instances' ML storage volumes, where allowed."""
    if guardrails.endpoint_kms_key and supports_volume_key(instance_type):
        return {"KmsKeyId": guardrails.endpoint_kms_key}
    return {}


def deployment_guardrails(guardrails: JobGuardrails, instance_type: str) -> dict[str, Any]:
    """What of the guardrails makes a different endpoint, for the identity a kept endpoint is reused by.

    Empty without a model VPC, isolation or endpoint key, so such identities stay what they were.
    """
    settings = {
        **model_settings(guardrails, model_requires_isolation=False),
        **endpoint_config_settings(guardrails, instance_type),
    }
    if settings == {"EnableNetworkIsolation": False}:
        return {}
    return {"guardrails": settings}
