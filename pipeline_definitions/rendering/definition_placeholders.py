"""Placeholder values that stand in for CloudFormation values while the SDK renders the definition.

The SDK needs concrete strings (an image URI, a role ARN, bucket names) but the stack only knows CDK
tokens. Each placeholder is a syntactically valid value the SDK accepts unchanged, unique enough to be
found again in the JSON text and replaced by `${Variable}` for `Fn::Sub`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLACEHOLDER_MARK = "evalops-placeholder"


@dataclass(frozen=True)
class Placeholder:
    variable: str
    value: str


IMAGE_URI = Placeholder("ImageUri", f"111111111111.dkr.ecr.us-east-1.amazonaws.com/{PLACEHOLDER_MARK}-image:latest")
GPU_IMAGE_URI = Placeholder(
    "GpuImageUri", f"111111111111.dkr.ecr.us-east-1.amazonaws.com/{PLACEHOLDER_MARK}-gpu-image:latest"
)
ROLE_ARN = Placeholder("RoleArn", f"arn:aws:iam::111111111111:role/{PLACEHOLDER_MARK}-role")
ARTIFACTS_BUCKET = Placeholder("ArtifactsBucket", f"{PLACEHOLDER_MARK}-artifacts")
CODE_BUCKET = Placeholder("CodeBucket", f"{PLACEHOLDER_MARK}-code")
CONFIG_URI = Placeholder("ConfigUri", f"s3://{PLACEHOLDER_MARK}-configuration/config.json")
PROMPT_CATALOG_URI = Placeholder("PromptCatalogUri", f"s3://{PLACEHOLDER_MARK}-catalog/catalog/")
KMS_KEY_ARN = Placeholder("KmsKeyArn", f"arn:aws:kms:us-east-1:111111111111:key/{PLACEHOLDER_MARK}-key")
REGION = Placeholder("Region", f"{PLACEHOLDER_MARK}-region")

# Order of `CloudFormationDefinition.variables`.
PLACEHOLDERS: tuple[Placeholder, ...] = (
    IMAGE_URI,
    ROLE_ARN,
    ARTIFACTS_BUCKET,
    CODE_BUCKET,
    CONFIG_URI,
    PROMPT_CATALOG_URI,
    KMS_KEY_ARN,
    REGION,
    GPU_IMAGE_URI,
)


def check_free_of_placeholders(label: str, value: str) -> None:
    """Text we render around the placeholders must not contain one, or it would be substituted too."""
    if PLACEHOLDER_MARK in value:
        raise ValueError(f"{label} {value!r} must not contain {PLACEHOLDER_MARK!r}")


def check_data_free_of_placeholders(label: str, data: Any) -> None:
    """The same check over every string in nested data (e.g. a dumped config), naming the key path."""
    if isinstance(data, str):
        check_free_of_placeholders(label, data)
    elif isinstance(data, dict):
        for key, value in data.items():
            check_free_of_placeholders(f"{label} key", str(key))
            check_data_free_of_placeholders(f"{label}.{key}", value)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_data_free_of_placeholders(f"{label}[{index}]", value)


def to_fn_sub_template(rendered: str) -> tuple[str, tuple[str, ...]]:
    """The rendered text as an `Fn::Sub` template, and the variables it uses (in PLACEHOLDERS order).

    A literal `${` is written `${!` first, which `Fn::Sub` turns back into `${`, so only the
    placeholders become substitutions.
    """
    template = rendered.replace("${", "${!")
    used: list[str] = []
    for placeholder in PLACEHOLDERS:
        if placeholder.value in template:
            template = template.replace(placeholder.value, "${" + placeholder.variable + "}")
            used.append(placeholder.variable)
    if PLACEHOLDER_MARK in template:
        raise ValueError(f"a placeholder was altered while rendering: {PLACEHOLDER_MARK!r} remains in the definition")
    return template, tuple(used)
