"""An environment's network, key, tag and boundary settings, combined with the SDK defaults file it names.

Precedence is the SageMaker SDK's (`sagemaker.utils.resolve_value_from_config`): a value the environment sets
explicitly wins, then the defaults file's value for that kind of resource, then evalops's own default (no VPC,
the environment's key). Tags merge as the SDK merges them (`Session._append_sagemaker_config_tags`): the file's
tags are added where the environment has not set the key.

Where each setting goes:
  processing jobs   VpcConfig (never network isolation: they call S3, SageMaker, Bedrock and the models),
                    volume and output keys, tags: in the pipeline definition
  training jobs     VpcConfig, network isolation, volume and output keys, inter-container encryption (from
                    the defaults file only), tags: set by the finetune step
  models            VpcConfig, network isolation, tags: set by the deploy step; endpoint configs get the
                    volume key (KmsKeyId) and tags; endpoints and model packages the tags
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_definitions.loading import sagemaker_defaults as sd
from pipeline_definitions.loading.environments import MAX_EXTRA_TAGS, MAX_JOINED_IDS, TAG_KEY_RE, Environment
from pipeline_definitions.loading.loader import ConfigError, LoadedConfig, Problem
from pipeline_definitions.rendering.sagemaker_definition import Guardrails
from step_code.contract.job_env import JobGuardrails, Vpc

# The deploy step's model definitions whose containers download at start-up, which isolation forbids.
DOWNLOADING_DEPLOYMENTS = frozenset({"huggingface-tgi"})


@dataclass(frozen=True)
class AccountGuardrails:
    definition: Guardrails = field(default_factory=Guardrails)
    # Every VPC a job or model of the run goes into (the role may create network interfaces in them).
    vpcs: tuple[Vpc, ...] = ()
    # Keys other than the environment's own that jobs and endpoints use (the role is granted them).
    extra_key_arns: tuple[str, ...] = ()
    # Extra tags on every stack resource (and, through `definition`, on what runs create).
    tags: dict[str, str] = field(default_factory=dict)
    permissions_boundary_arn: str | None = None
    # One line each: what the defaults file holds that does not apply, and why.
    warnings: tuple[str, ...] = ()


def _vpc(defaults: sd.SdkDefaults, subnets: tuple[str, ...], groups: tuple[str, ...]) -> Vpc | None:
    subnet_ids, group_ids = defaults.get(subnets), defaults.get(groups)
    if subnet_ids is None and group_ids is None:
        return None
    if not subnet_ids or not group_ids:
        given, missing = (subnets, groups) if subnet_ids else (groups, subnets)
        raise ConfigError(
            [
                Problem(
                    defaults.path,
                    defaults.lines.get(given),
                    ".".join((sd.SAGEMAKER, *missing)),
                    f"missing: {'.'.join(given)} is given, and a VpcConfig needs both subnets and security groups",
                )
            ]
        )
    for path, ids in ((subnets, subnet_ids), (groups, group_ids)):
        if len(",".join(ids)) > MAX_JOINED_IDS:
            raise ConfigError(
                [
                    Problem(
                        defaults.path,
                        defaults.lines.get(path),
                        ".".join((sd.SAGEMAKER, *path)),
                        f"the steps receive these ids in a job environment value of at most {MAX_JOINED_IDS} "
                        "characters (expected at most 10 subnets)",
                    )
                ]
            )
    return Vpc(tuple(map(str, subnet_ids)), tuple(map(str, group_ids)))


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _tags(environment: Environment, defaults: sd.SdkDefaults) -> tuple[dict[str, str], list[str]]:
    tags = dict(environment.tags)
    warnings: list[str] = []
    for section, key, value in defaults.tags():
        if not TAG_KEY_RE.match(key):
            raise ConfigError(
                [
                    Problem(
                        defaults.path,
                        defaults.lines.get((section, "Tags")),
                        f"{sd.SAGEMAKER}.{section}.Tags",
                        f"{key!r} is not a tag key evalops can add (keys starting aws: or evalops: are reserved: the "
                        "safety net and endpoint reuse read the evalops: tags)",
                    )
                ]
            )
        if key in tags:
            if tags[key] != value and key not in environment.tags:
                warnings.append(
                    f"{defaults.path}: {sd.SAGEMAKER}.{section}.Tags: tag {key!r} is also given another value by an "
                    f"earlier section; every resource of the run gets {tags[key]!r}"
                )
            continue
        tags[key] = value
    if len(tags) > MAX_EXTRA_TAGS:
        raise ConfigError(
            [
                Problem(
                    defaults.path,
                    None,
                    "SageMaker.*.Tags",
                    f"with the environment's tags there are {len(tags)} extra tags; SageMaker allows 50 per "
                    "resource and a kept endpoint's own take up to 20 (its identity, use and the runs using it; "
                    f"expected at most {MAX_EXTRA_TAGS})",
                )
            ]
        )
    return tags, warnings


def resolve_guardrails(environment: Environment, repo_root: Path) -> AccountGuardrails:
    """The environment's settings with its SDK defaults file applied; ConfigError on a bad file."""
    if environment.sagemaker_defaults is not None:
        defaults = sd.read_sagemaker_defaults(repo_root / environment.sagemaker_defaults)
    else:
        defaults = sd.SdkDefaults(path="")
    explicit_vpc = (
        Vpc(environment.vpc.subnets, environment.vpc.security_group_ids) if environment.vpc is not None else None
    )
    processing_vpc = explicit_vpc or _vpc(defaults, sd.PROCESSING_SUBNETS, sd.PROCESSING_SECURITY_GROUPS)
    training_vpc = explicit_vpc or _vpc(defaults, sd.TRAINING_SUBNETS, sd.TRAINING_SECURITY_GROUPS)
    model_vpc = explicit_vpc or _vpc(defaults, sd.MODEL_SUBNETS, sd.MODEL_SECURITY_GROUPS)
    volume, output = environment.volume_kms_key_arn, environment.output_kms_key_arn
    tags, tag_warnings = _tags(environment, defaults)
    resources = JobGuardrails(
        training_vpc=training_vpc,
        training_network_isolation=bool(_first(environment.network_isolation, defaults.get(sd.TRAINING_ISOLATION))),
        training_volume_kms_key=_first(volume, defaults.get(sd.TRAINING_VOLUME_KEY)),
        training_output_kms_key=_first(output, defaults.get(sd.TRAINING_OUTPUT_KEY)),
        training_inter_container_encryption=bool(defaults.get(sd.TRAINING_ENCRYPTION)),
        model_vpc=model_vpc,
        model_network_isolation=bool(_first(environment.network_isolation, defaults.get(sd.MODEL_ISOLATION))),
        endpoint_kms_key=_first(volume, defaults.get(sd.ENDPOINT_VOLUME_KEY)),
        tags=tuple(tags.items()),
        warm_pool_keep_alive_seconds=environment.warm_pool_keep_alive_seconds,
    )
    definition = Guardrails(
        processing_vpc=processing_vpc,
        processing_volume_kms_key_arn=_first(volume, defaults.get(sd.PROCESSING_VOLUME_KEY)),
        processing_output_kms_key_arn=_first(output, defaults.get(sd.PROCESSING_OUTPUT_KEY)),
        resources=resources,
    )
    keys = (
        definition.processing_volume_kms_key_arn,
        definition.processing_output_kms_key_arn,
        resources.training_volume_kms_key,
        resources.training_output_kms_key,
        resources.endpoint_kms_key,
    )
    vpcs = (processing_vpc, training_vpc, model_vpc)
    return AccountGuardrails(
        definition=definition,
        vpcs=tuple(dict.fromkeys(vpc for vpc in vpcs if vpc is not None)),
        extra_key_arns=tuple(sorted({key for key in keys if key is not None})),
        tags=tags,
        permissions_boundary_arn=environment.permissions_boundary_arn,
        warnings=(*defaults.warnings, *tag_warnings),
    )


def check_isolation(guardrails: AccountGuardrails, environment: Environment, loaded: LoadedConfig) -> None:
    """Network isolation of models breaks a container that downloads its weights at start-up: refuse it now."""
    if not guardrails.definition.resources.model_network_isolation:
        return
    problems = [
        Problem(
            str(loaded.path),
            None,
            f"models[{index}].model_provider",
            f"model {model.name!r} downloads its weights from the Hugging Face hub when its endpoint starts, which "
            f"network isolation of models in environment {environment.name!r} forbids (expected a jumpstart model, "
            "or network_isolation: false for this environment)",
        )
        for index, model in enumerate(loaded.config.models)
        if model.deploys_endpoint and model.provider.deploys in DOWNLOADING_DEPLOYMENTS
    ]
    if problems:
        raise ConfigError(problems)
