"""Storage of one environment: the KMS key, the data bucket (prompt catalog) and the artifacts bucket."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.components.buckets import access_log_bucket, encrypted_bucket
from stacks.components.service_keys import allow_log_and_event_services

RUN_OUTPUT_RETENTION = Duration.days(90)


class StorageStack(Stack):
    """Buckets and key shared by the pipeline stack; everything holding data is retained on deletion."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_prefix: str,
        pipeline_name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{resource_prefix}data",
            description=f"Encrypts the prompt catalog, configs and evaluation results of {resource_prefix}*",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The environment's log groups and its safety net's dead-letter queue are encrypted with this key too.
        allow_log_and_event_services(self.key, resource_prefix)
        self.log_bucket = access_log_bucket(self, "AccessLogs")
        self.data_bucket = encrypted_bucket(self, "Data", key=self.key, log_bucket=self.log_bucket)
        self.artifacts_bucket = encrypted_bucket(
            self,
            "Artifacts",
            key=self.key,
            log_bucket=self.log_bucket,
            lifecycle_rules=[
                # Every execution writes its step outputs under <pipeline>/runs/<execution>/; the decision
                # and the winner live on in the model registry, so old runs are only history. What a model
                # package points at (<pipeline>/artifacts/) and the response cache are kept.
                s3.LifecycleRule(
                    id="expire-run-outputs",
                    prefix=f"{pipeline_name}/runs/",
                    expiration=RUN_OUTPUT_RETENTION,
                )
            ],
        )
