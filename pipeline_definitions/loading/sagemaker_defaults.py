"""A SageMaker Python SDK defaults file (`SchemaVersion: '1.0'`, `SageMaker: ...`), read offline at synth time.

An environment names one with `sagemaker_defaults:`. Only that file is read: never the machine's own
(`/etc/xdg/sagemaker/config.yaml`, `~/.config/sagemaker/config.yaml`), so synth stays deterministic.
The sections evalops applies are checked against the SDK's own schema (`sagemaker.config.config_schema`);
every other key is reported as a warning saying why it does not apply, so nothing is silently ignored.
How the values combine with the environment's own settings is in `pipeline_definitions/loading/account_guardrails.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_definitions.loading.environments import KMS_KEY_ARN_RE
from pipeline_definitions.loading.loader import ConfigError, Problem, YamlIndex, key_path, read_yaml_mapping
from pipeline_definitions.loading.validation import Finding, Loc
from pipeline_definitions.rendering.sagemaker_definition import SDK_CONFIG_LOGGER

SCHEMA_VERSION = "1.0"
SAGEMAKER = "SageMaker"

# Leaves evalops applies, by key path under `SageMaker`.
PROCESSING_SUBNETS = ("ProcessingJob", "NetworkConfig", "VpcConfig", "Subnets")
PROCESSING_SECURITY_GROUPS = ("ProcessingJob", "NetworkConfig", "VpcConfig", "SecurityGroupIds")
PROCESSING_ISOLATION = ("ProcessingJob", "NetworkConfig", "EnableNetworkIsolation")
PROCESSING_VOLUME_KEY = ("ProcessingJob", "ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")
PROCESSING_OUTPUT_KEY = ("ProcessingJob", "ProcessingOutputConfig", "KmsKeyId")
TRAINING_SUBNETS = ("TrainingJob", "VpcConfig", "Subnets")
TRAINING_SECURITY_GROUPS = ("TrainingJob", "VpcConfig", "SecurityGroupIds")
TRAINING_ISOLATION = ("TrainingJob", "EnableNetworkIsolation")
TRAINING_VOLUME_KEY = ("TrainingJob", "ResourceConfig", "VolumeKmsKeyId")
TRAINING_OUTPUT_KEY = ("TrainingJob", "OutputDataConfig", "KmsKeyId")
TRAINING_ENCRYPTION = ("TrainingJob", "EnableInterContainerTrafficEncryption")
MODEL_SUBNETS = ("Model", "VpcConfig", "Subnets")
MODEL_SECURITY_GROUPS = ("Model", "VpcConfig", "SecurityGroupIds")
MODEL_ISOLATION = ("Model", "EnableNetworkIsolation")
ENDPOINT_VOLUME_KEY = ("EndpointConfig", "KmsKeyId")
KEY_PATHS = (
    PROCESSING_VOLUME_KEY,
    PROCESSING_OUTPUT_KEY,
    TRAINING_VOLUME_KEY,
    TRAINING_OUTPUT_KEY,
    ENDPOINT_VOLUME_KEY,
)
# Tags of these sections go on everything the run creates (one tag set serves every resource kind).
TAG_SECTIONS = ("ProcessingJob", "TrainingJob", "Model", "EndpointConfig", "Endpoint", "Pipeline")
APPLIED: tuple[tuple[str, ...], ...] = (
    PROCESSING_SUBNETS,
    PROCESSING_SECURITY_GROUPS,
    PROCESSING_ISOLATION,
    PROCESSING_VOLUME_KEY,
    PROCESSING_OUTPUT_KEY,
    TRAINING_SUBNETS,
    TRAINING_SECURITY_GROUPS,
    TRAINING_ISOLATION,
    TRAINING_VOLUME_KEY,
    TRAINING_OUTPUT_KEY,
    TRAINING_ENCRYPTION,
    MODEL_SUBNETS,
    MODEL_SECURITY_GROUPS,
    MODEL_ISOLATION,
    ENDPOINT_VOLUME_KEY,
    *((section, "Tags") for section in TAG_SECTIONS),
)

# Why a key the file may hold does not apply, by its path under `SageMaker` (the longest match wins).
NOT_APPLIED: dict[tuple[str, ...], str] = {
    ("PythonSDK",): "settings of the SDK's own Python classes (RemoteFunction is the @remote decorator the "
    "reference sample's notebooks use); evalops renders its pipeline offline and runs its steps as processing jobs",
    ("ProcessingJob", "RoleArn"): "evalops creates the role its jobs run as (stacks/components/execution_role.py)",
    ("TrainingJob", "RoleArn"): "evalops creates the role its jobs run as (stacks/components/execution_role.py)",
    ("Model", "ExecutionRoleArn"): "evalops creates the role its models run as (stacks/components/execution_role.py)",
    ("Pipeline", "RoleArn"): "evalops creates the role its pipeline runs as (stacks/components/execution_role.py)",
    ("ProcessingJob", "Environment"): "the steps' environment is part of evalops's contract with its step code",
    ("TrainingJob", "Environment"): "the training job's environment comes from the JumpStart model's specs",
    ("ProcessingJob", "ProcessingInputs"): "evalops names every input of its processing jobs itself",
    PROCESSING_ISOLATION: "evalops's processing jobs call S3, SageMaker, Bedrock and model endpoints, which network "
    "isolation forbids; they run in the VPC instead",
    ("ProcessingJob", "NetworkConfig", "EnableInterContainerTrafficEncryption"): "evalops's processing jobs run on "
    "one instance, so there is no traffic between containers to encrypt",
    ("TrainingJob", "ProfilerConfig"): "the JumpStart estimator sets the fine-tuning job's profiler",
    ("Model", "Containers"): "the container of a deployed model comes from its JumpStart specs or the TGI image",
    ("Model", "PrimaryContainer"): "the container of a deployed model comes from its JumpStart specs or the TGI image",
    ("EndpointConfig", "ProductionVariants"): "evalops sizes each endpoint from the model's deployment_config",
    ("EndpointConfig", "DataCaptureConfig"): "evaluation endpoints capture no data; the run stores every response",
    ("EndpointConfig", "AsyncInferenceConfig"): "evaluation endpoints are real-time endpoints",
    ("ModelPackage",): "the register step builds the model package from the evaluation (step_code/register.py)",
}
NOT_CREATED_REASON = "evalops creates no such resource"
CUSTOM_PARAMETERS_REASON = "free-form values that the SDK itself does not read"


@dataclass(frozen=True)
class SdkDefaults:
    """The values of a defaults file that evalops applies, by key path under `SageMaker`, and its warnings."""

    path: str
    values: Mapping[tuple[str, ...], Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # The line of each value, for problems found when the values are combined.
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict)

    def get(self, path: tuple[str, ...]) -> Any:
        return self.values.get(path)

    def tags(self) -> list[tuple[str, str, str]]:
        """(section, key, value) of every tag the file gives, in file order of the sections."""
        return [
            (section, str(tag["Key"]), str(tag["Value"]))
            for section in TAG_SECTIONS
            for tag in self.values.get((section, "Tags")) or []
        ]


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _leaves(data: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Key paths of the mapping's keys, stopping at the paths evalops applies or explains."""
    if path in APPLIED or path in NOT_APPLIED or not isinstance(data, dict):
        return [path]
    return [leaf for key, value in data.items() for leaf in _leaves(value, (*path, str(key)))]


def _reason(path: tuple[str, ...]) -> str:
    for length in range(len(path), 0, -1):
        if path[:length] in NOT_APPLIED:
            return NOT_APPLIED[path[:length]]
    return NOT_CREATED_REASON


def _sdk_schema_errors(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    # The SDK's schema module imports the whole SDK, which rendering the definition imports anyway; quiet its
    # "Not applying SDK defaults" notices as rendering does.
    config_logger = logging.getLogger(SDK_CONFIG_LOGGER)
    if config_logger.level == logging.NOTSET:
        config_logger.setLevel(logging.WARNING)
    import jsonschema
    from sagemaker.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA

    validator_class = jsonschema.validators.validator_for(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    validator = validator_class(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    return [(tuple(error.absolute_path), error.message) for error in validator.iter_errors(data)]


def _key_arn_findings(data: dict[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for path in KEY_PATHS:
        value = _lookup(data.get(SAGEMAKER), path)
        if value is not None and not KMS_KEY_ARN_RE.match(str(value)):
            findings.append(
                Finding(
                    (SAGEMAKER, *path),
                    f"{value!r} is not a KMS key ARN (expected arn:aws:kms:REGION:ACCOUNT:key/ID: "
                    "evalops grants its role use of the key, and IAM names keys by ARN)",
                )
            )
    return findings


def read_sagemaker_defaults(path: Path, display: str | None = None) -> SdkDefaults:
    """The file's applied values and its warnings; ConfigError (one line per problem) if an applied value is bad."""
    shown = display or str(path)
    root, data = read_yaml_mapping(path, "SageMaker SDK defaults (SchemaVersion, SageMaker)")
    index = YamlIndex(root)
    findings: list[Finding] = []
    if str(data.get("SchemaVersion")) != SCHEMA_VERSION:
        findings.append(
            Finding(("SchemaVersion",), f"expected '{SCHEMA_VERSION}' (a SageMaker Python SDK defaults file)")
        )
    ignored: dict[tuple[str, ...], list[str]] = {}
    for loc, message in _sdk_schema_errors(data):
        applied = len(loc) > 1 and loc[0] == SAGEMAKER and any(tuple(loc[1 : 1 + len(a)]) == a for a in APPLIED)
        if applied or not loc or loc[0] == "SchemaVersion":
            findings.append(Finding(loc, f"{message} (the SDK's defaults schema)"))
        else:
            leaf = next(
                (leaf for leaf in _leaves(data.get(SAGEMAKER), ()) if tuple(loc[1 : 1 + len(leaf)]) == leaf), ()
            )
            ignored.setdefault(leaf, []).append(message)
    findings += _key_arn_findings(data)
    if findings:
        raise ConfigError(index.problems(shown, findings))
    sagemaker = data.get(SAGEMAKER) or {}
    warnings: list[str] = []
    for leaf in _leaves(sagemaker, ()):
        if leaf in APPLIED or not leaf:
            continue
        loc = (SAGEMAKER, *leaf)
        line, spelled = index.locate(loc)
        note = f" (the SDK's own schema refuses it too: {ignored[leaf][0]})" if leaf in ignored else ""
        warnings.append(str(Problem(shown, line, key_path(spelled), f"not applied: {_reason(leaf)}{note}")))
    if "CustomParameters" in data:
        line, _ = index.locate(("CustomParameters",))
        warnings.append(str(Problem(shown, line, "CustomParameters", f"not applied: {CUSTOM_PARAMETERS_REASON}")))
    values = {leaf: _lookup(sagemaker, leaf) for leaf in APPLIED if _lookup(sagemaker, leaf) is not None}
    lines = {leaf: index.locate((SAGEMAKER, *leaf))[0] for leaf in values}
    return SdkDefaults(path=shown, values=values, warnings=tuple(warnings), lines=lines)
