"""The model registry: one SageMaker model package group per group a winner can be registered in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct


class RegistryStack(Stack):
    """Groups are retained on deletion: they hold the registered winners and their evaluation metrics."""

    def __init__(self, scope: Construct, construct_id: str, *, groups: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.groups: dict[str, sagemaker.CfnModelPackageGroup] = {}
        for name, description in groups.items():
            group = sagemaker.CfnModelPackageGroup(
                self,
                f"Group-{name}",
                model_package_group_name=name,
                model_package_group_description=description or None,
            )
            group.apply_removal_policy(RemovalPolicy.RETAIN)
            self.groups[name] = group
