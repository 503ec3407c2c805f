"""Environment variables the pipeline sets on step jobs (and the local engine sets in-process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Resource names made by deploy/finetune start with this prefix; IAM policies match on it.
RESOURCE_PREFIX_ENV = "EVALOPS_RESOURCE_PREFIX"
DEFAULT_RESOURCE_PREFIX = "evalops-local-"
EXECUTION_ARN_ENV = "EVALOPS_EXECUTION_ARN"
ROLE_ARN_ENV = "EVALOPS_ROLE_ARN"
ARTIFACTS_URI_ENV = "EVALOPS_ARTIFACTS_URI"
DATA_URI_ENV = "EVALOPS_DATA_URI"
# The KMS key the steps encrypt what they write to S3 with.
KMS_KEY_ENV = "EVALOPS_KMS_KEY_ARN"

# Account guardrails of the environment for what the finetune, deploy and register steps create (the
# processing jobs themselves get theirs in the pipeline definition). Job environment variables rather
# than config.json: one config runs in several environments, each with its own network, keys and tags,
# and config.json stays the same bytes in all of them. A processing job's environment values hold at
# most 256 characters, so lists are comma-separated and each extra tag takes two variables.
TRAINING_SUBNETS_ENV = "EVALOPS_TRAINING_SUBNETS"
TRAINING_SECURITY_GROUPS_ENV = "EVALOPS_TRAINING_SECURITY_GROUP_IDS"
TRAINING_NETWORK_ISOLATION_ENV = "EVALOPS_TRAINING_NETWORK_ISOLATION"
TRAINING_VOLUME_KMS_KEY_ENV = "EVALOPS_TRAINING_VOLUME_KMS_KEY_ARN"
TRAINING_OUTPUT_KMS_KEY_ENV = "EVALOPS_TRAINING_OUTPUT_KMS_KEY_ARN"
TRAINING_INTER_CONTAINER_ENCRYPTION_ENV = "EVALOPS_TRAINING_INTER_CONTAINER_ENCRYPTION"
MODEL_SUBNETS_ENV = "EVALOPS_MODEL_SUBNETS"
MODEL_SECURITY_GROUPS_ENV = "EVALOPS_MODEL_SECURITY_GROUP_IDS"
MODEL_NETWORK_ISOLATION_ENV = "EVALOPS_MODEL_NETWORK_ISOLATION"
# The key of the endpoint's ML storage volume (CreateEndpointConfig KmsKeyId).
ENDPOINT_KMS_KEY_ENV = "EVALOPS_ENDPOINT_KMS_KEY_ARN"
# The environment's warm-pool default for training jobs whose fine-tuning sets no keep-alive of its own.
WARM_POOL_KEEP_ALIVE_ENV = "EVALOPS_WARM_POOL_KEEP_ALIVE_SECONDS"
EXTRA_TAG_KEY_ENV_PREFIX = "EVALOPS_EXTRA_TAG_KEY_"
EXTRA_TAG_VALUE_ENV_PREFIX = "EVALOPS_EXTRA_TAG_VALUE_"
MAX_ENV_VALUE_LENGTH = 256
_TRUE = "true"


@dataclass(frozen=True)
class Vpc:
    """A SageMaker `VpcConfig`: the subnets and security groups a job's or model's network interfaces go into."""

    subnets: tuple[str, ...]
    security_group_ids: tuple[str, ...]

    def api(self) -> dict[str, list[str]]:
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}


@dataclass(frozen=True)
class JobGuardrails:
    """What the control-plane steps add to the training jobs, models, endpoint configs and packages they create.

    A key left unset falls back to the environment's own key (`EVALOPS_KMS_KEY_ARN`).
    """

    training_vpc: Vpc | None = None
    training_network_isolation: bool = False
    training_volume_kms_key: str | None = None
    training_output_kms_key: str | None = None
    training_inter_container_encryption: bool = False
    model_vpc: Vpc | None = None
    model_network_isolation: bool = False
    endpoint_kms_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    warm_pool_keep_alive_seconds: int | None = None

    def to_environment(self) -> dict[str, str]:
        """The job environment variables that carry these settings; ValueError when one would not fit."""
        values: dict[str, str] = {}
        for vpc, subnets, groups in (
            (self.training_vpc, TRAINING_SUBNETS_ENV, TRAINING_SECURITY_GROUPS_ENV),
            (self.model_vpc, MODEL_SUBNETS_ENV, MODEL_SECURITY_GROUPS_ENV),
        ):
            if vpc is not None:
                values[subnets] = ",".join(vpc.subnets)
                values[groups] = ",".join(vpc.security_group_ids)
        if self.training_network_isolation:
            values[TRAINING_NETWORK_ISOLATION_ENV] = _TRUE
        if self.training_inter_container_encryption:
            values[TRAINING_INTER_CONTAINER_ENCRYPTION_ENV] = _TRUE
        if self.model_network_isolation:
            values[MODEL_NETWORK_ISOLATION_ENV] = _TRUE
        for name, key in (
            (TRAINING_VOLUME_KMS_KEY_ENV, self.training_volume_kms_key),
            (TRAINING_OUTPUT_KMS_KEY_ENV, self.training_output_kms_key),
            (ENDPOINT_KMS_KEY_ENV, self.endpoint_kms_key),
        ):
            if key:
                values[name] = key
        if self.warm_pool_keep_alive_seconds is not None:
            values[WARM_POOL_KEEP_ALIVE_ENV] = str(self.warm_pool_keep_alive_seconds)
        for index, (key, value) in enumerate(self.tags):
            values[f"{EXTRA_TAG_KEY_ENV_PREFIX}{index}"] = key
            values[f"{EXTRA_TAG_VALUE_ENV_PREFIX}{index}"] = value
        for name, value in values.items():
            if len(value) > MAX_ENV_VALUE_LENGTH:
                raise ValueError(
                    f"{name} would be {len(value)} characters; a processing job's environment values hold at most "
                    f"{MAX_ENV_VALUE_LENGTH} (give fewer subnets)"
                )
        return values

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> JobGuardrails:
        def vpc(subnets: str, groups: str) -> Vpc | None:
            # The renderer sets both or neither; a VpcConfig needs both.
            if not environ.get(subnets) or not environ.get(groups):
                return None
            return Vpc(tuple(environ[subnets].split(",")), tuple(environ[groups].split(",")))

        default_key = environ.get(KMS_KEY_ENV) or None
        tags: list[tuple[str, str]] = []
        while f"{EXTRA_TAG_KEY_ENV_PREFIX}{len(tags)}" in environ:
            index = len(tags)
            tags.append(
                (environ[f"{EXTRA_TAG_KEY_ENV_PREFIX}{index}"], environ.get(f"{EXTRA_TAG_VALUE_ENV_PREFIX}{index}", ""))
            )
        return cls(
            training_vpc=vpc(TRAINING_SUBNETS_ENV, TRAINING_SECURITY_GROUPS_ENV),
            training_network_isolation=environ.get(TRAINING_NETWORK_ISOLATION_ENV) == _TRUE,
            training_volume_kms_key=environ.get(TRAINING_VOLUME_KMS_KEY_ENV) or default_key,
            training_output_kms_key=environ.get(TRAINING_OUTPUT_KMS_KEY_ENV) or default_key,
            training_inter_container_encryption=environ.get(TRAINING_INTER_CONTAINER_ENCRYPTION_ENV) == _TRUE,
            model_vpc=vpc(MODEL_SUBNETS_ENV, MODEL_SECURITY_GROUPS_ENV),
            model_network_isolation=environ.get(MODEL_NETWORK_ISOLATION_ENV) == _TRUE,
            endpoint_kms_key=environ.get(ENDPOINT_KMS_KEY_ENV) or default_key,
            tags=tuple(tags),
            # The renderer writes it from a validated setting: a value that is not a number is a broken job.
            warm_pool_keep_alive_seconds=int(environ[WARM_POOL_KEEP_ALIVE_ENV])
            if environ.get(WARM_POOL_KEEP_ALIVE_ENV)
            else None,
        )
