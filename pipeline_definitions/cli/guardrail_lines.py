"""`evalops plan --env NAME`: the environment's guardrails, resolved as `cdk synth` resolves them.

The values are what the stacks put on the run's processing jobs (in the pipeline definition) and what the
finetune and deploy steps put on training jobs, models and endpoint configs: the environment's own settings,
then its SageMaker SDK defaults file (`sagemaker_defaults`), then evalops's defaults (no VPC, the
environment's key). Paths in the environments file are relative to the current folder, the repository root,
as for `evalops start`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline_definitions.loading.account_guardrails import AccountGuardrails, check_isolation, resolve_guardrails
from pipeline_definitions.loading.environments import Environment, load_environments
from pipeline_definitions.loading.loader import ConfigError, LoadedConfig, Problem
from step_code.contract.job_env import Vpc

ENVIRONMENT_KEY = "the environment's key"


@dataclass(frozen=True)
class EnvironmentGuardrails:
    environments_file: Path
    environment: Environment
    guardrails: AccountGuardrails


def environment_guardrails(environments_file: Path, name: str, loaded: LoadedConfig) -> EnvironmentGuardrails:
    """The named environment and its resolved guardrails; ConfigError (one line each) for a bad file, an unknown
    name, a bad defaults file, or a model the environment's network isolation cannot run."""
    environments = load_environments(environments_file)
    try:
        environment = environments.get(name)
    except KeyError:
        known = ", ".join(env.name for env in environments.environments)
        raise ConfigError(
            [Problem(str(environments_file), None, "environments", f"no environment named {name!r} (known: {known})")]
        ) from None
    guardrails = resolve_guardrails(environment, Path.cwd())
    check_isolation(guardrails, environment, loaded)
    return EnvironmentGuardrails(environments_file, environment, guardrails)


def _vpc(vpc: Vpc | None) -> str:
    if vpc is None:
        return "no VPC (SageMaker's network)"
    return f"VPC subnets {', '.join(vpc.subnets)}, security groups {', '.join(vpc.security_group_ids)}"


def _key(arn: str | None, what: str) -> str:
    return f"{what} key {arn or ENVIRONMENT_KEY}"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def guardrail_lines(resolved: EnvironmentGuardrails) -> list[str]:
    environment, guardrails = resolved.environment, resolved.guardrails
    definition = guardrails.definition
    resources = definition.resources
    source = str(resolved.environments_file)
    if environment.sagemaker_defaults is not None:
        source += f", with the SageMaker SDK defaults file {environment.sagemaker_defaults}"
    keep_alive = (
        f"{resources.warm_pool_keep_alive_seconds} s when the fine-tuning sets no keep_alive_period_in_seconds"
        if resources.warm_pool_keep_alive_seconds is not None
        else "none (only a fine-tuning's own keep_alive_period_in_seconds)"
    )
    tags = ", ".join(f"{key}={value}" for key, value in guardrails.tags.items()) or "none"
    lines = [
        f"Guardrails of environment {environment.name} (resources {environment.resource_prefix}*, {source}):",
        f"  processing jobs: {_vpc(definition.processing_vpc)}; network isolation off (they call S3, SageMaker, "
        f"Bedrock and the models); {_key(definition.processing_volume_kms_key_arn, 'volume')}; "
        f"{_key(definition.processing_output_kms_key_arn, 'output')}",
        f"  training jobs: {_vpc(resources.training_vpc)}; network isolation "
        f"{_on(resources.training_network_isolation)}; {_key(resources.training_volume_kms_key, 'volume')}; "
        f"{_key(resources.training_output_kms_key, 'output')}; inter-container encryption "
        f"{_on(resources.training_inter_container_encryption)}; warm-pool default {keep_alive}",
        f"  models and endpoints: {_vpc(resources.model_vpc)}; network isolation "
        f"{_on(resources.model_network_isolation)}; {_key(resources.endpoint_kms_key, 'endpoint volume')}",
        f"  extra tags (every stack resource and everything a run creates): {tags}",
        f"  permissions boundary (every role the stacks create): {guardrails.permissions_boundary_arn or 'none'}",
    ]
    lines += [f"  warning: {warning}" for warning in guardrails.warnings]
    return lines
