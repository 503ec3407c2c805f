"""Files the pipeline reads at run time, copied into the environment's KMS-encrypted buckets on deploy.

Each upload goes under a prefix named after a hash of its content: changing the prompt catalog or the
config changes the key, hence the pipeline definition, and earlier runs keep reading what they read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3_deployment
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from pipeline_definitions.loading.loader import CATALOG_EXCLUDE
from stacks.components.service_keys import LOG_GROUP_ROOT

CATALOG_PREFIX = "prompt-catalog/"
HASH_LENGTH = 16
# Hidden files (.gitkeep, editor state) are not part of a catalog.
DEPLOYMENT_LOG_GROUP_ID = "BucketDeploymentLogs"
DEPLOYMENT_HANDLER_ID_PREFIX = "Custom::CDKBucketDeployment"
# What `grantRead`/`grantReadWrite` give BucketDeployment's function on the asset and destination buckets.
DEPLOYMENT_HANDLER_WILDCARD_ACTIONS = (
    "s3:GetBucket*",
    "s3:GetObject*",
    "s3:List*",
    "s3:Abort*",
    "s3:DeleteObject*",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def _deployment_log_group(scope: Construct, key: kms.IKey) -> logs.ILogGroup:
    """One log group with a retention for the stack's shared deployment function (it is a singleton).

    Named after the stack, whose name starts with the environment's resource prefix, so the key's policy
    lets CloudWatch Logs encrypt it (`service_keys.py`). A named group would block a re-created stack if
    it were retained, and it holds only deployment logs.
    """
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(DEPLOYMENT_LOG_GROUP_ID)
    if isinstance(existing, logs.LogGroup):
        return existing
    return logs.LogGroup(
        stack,
        DEPLOYMENT_LOG_GROUP_ID,
        log_group_name=f"{LOG_GROUP_ROOT}{stack.stack_name}-uploads",
        encryption_key=key,
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )


def _deploy(
    scope: Construct,
    construct_id: str,
    *,
    source: s3_deployment.ISource,
    bucket: s3.IBucket,
    key: kms.IKey,
    prefix: str,
) -> s3_deployment.BucketDeployment:
    return s3_deployment.BucketDeployment(
        scope,
        construct_id,
        sources=[source],
        destination_bucket=bucket,
        destination_key_prefix=prefix,
        server_side_encryption=s3_deployment.ServerSideEncryption.AWS_KMS,
        server_side_encryption_aws_kms_key_id=key.key_id,
        # The prefix is unique to this content: nothing else lives there to prune, and old runs need old files.
        prune=False,
        retain_on_delete=True,
        # A catalog of many files would overflow the custom resource's 4 KB response.
        output_object_keys=False,
        log_group=_deployment_log_group(scope, key),
    )


class PromptCatalogUpload(Construct):
    """The repository's prompt catalog folder under `prompt-catalog/<content hash>/` of the data bucket."""

    def __init__(
        self, scope: Construct, construct_id: str, *, catalog_dir: Path, bucket: s3.IBucket, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        asset = s3_assets.Asset(self, "Asset", path=str(catalog_dir), exclude=list(CATALOG_EXCLUDE))
        self.prefix = f"{CATALOG_PREFIX}{asset.asset_hash[:HASH_LENGTH]}/"
        self.deployment = _deploy(
            self,
            "Deployment",
            source=s3_deployment.Source.bucket(asset.bucket, asset.s3_object_key),
            bucket=bucket,
            key=key,
            prefix=self.prefix,
        )
        self.uri = f"s3://{bucket.bucket_name}/{self.prefix}"


class TextObjectUpload(Construct):
    """One text file at `<prefix><content hash>/<file name>`; CDK tokens in the text are resolved on deploy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        text: str,
        file_name: str,
        prefix: str,
        bucket: s3.IBucket,
        key: kms.IKey,
        content_id: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        folder = f"{prefix}{content_id or content_hash(text)}/"
        self.object_key = f"{folder}{file_name}"
        self.deployment = _deploy(
            self,
            "Deployment",
            source=s3_deployment.Source.data(file_name, text),
            bucket=bucket,
            key=key,
            prefix=folder,
        )
        self.uri = f"s3://{bucket.bucket_name}/{self.object_key}"


def acknowledge_deployment_handler(stack: Stack) -> None:
    """cdk-nag findings on the function CDK's BucketDeployment shares across a stack, with why they stay."""
    handlers = [child for child in stack.node.children if child.node.id.startswith(DEPLOYMENT_HANDLER_ID_PREFIX)]
    NagSuppressions.add_resource_suppressions(
        handlers,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="CDK's deployment function logs through AWSLambdaBasicExecutionRole, which grants only "
                "logs:CreateLogGroup, logs:CreateLogStream and logs:PutLogEvents.",
                applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="CDK's BucketDeployment grants its function these S3 and KMS action groups to sync objects.",
                applies_to=[f"Action::{action}" for action in DEPLOYMENT_HANDLER_WILDCARD_ACTIONS],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="CDK's BucketDeployment lets its function read every object of the CDK asset bucket and read "
                "and write every object of the destination bucket, which the construct cannot narrow; it writes only "
                "below the upload's prefix.",
                applies_to=[RegexAppliesTo(regex=r"/^Resource::.*\/\*$/")],
            ),
            NagPackSuppression(
                id="AwsSolutions-L1",
                reason="The runtime of CDK's deployment function is chosen and updated by aws-cdk-lib.",
            ),
        ],
        apply_to_children=True,
    )
