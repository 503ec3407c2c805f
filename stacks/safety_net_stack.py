"""The safety net of one environment: endpoint clean-up after failed or stopped runs, and an age bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.components.endpoint_safety_net import EndpointSafetyNet

HANDLER_DIR = Path(__file__).resolve().parent / "safety_net_lambda"


class SafetyNetStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_prefix: str,
        pipeline_arn: str,
        key: kms.IKey,
        handler_dir: Path = HANDLER_DIR,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.safety_net = EndpointSafetyNet(
            self,
            "EndpointSafetyNet",
            handler_dir=handler_dir,
            resource_prefix=resource_prefix,
            pipeline_arn=pipeline_arn,
            key=key,
        )
