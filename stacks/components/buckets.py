"""The platform's S3 buckets: versioned, SSL-only, never public, logged to one access-log bucket."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

ACCESS_LOG_RETENTION = Duration.days(365)
NONCURRENT_VERSION_RETENTION = Duration.days(30)
INCOMPLETE_UPLOAD_RETENTION = Duration.days(7)


def access_log_bucket(scope: Construct, construct_id: str) -> s3.Bucket:
    """Destination of the server access logs of the other buckets.

    S3 server access logging delivers only to buckets whose default encryption is SSE-S3 (a target
    with SSE-KMS default encryption receives no logs), so this bucket alone is S3-managed.
    """
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire-access-logs",
                expiration=ACCESS_LOG_RETENTION,
                noncurrent_version_expiration=NONCURRENT_VERSION_RETENTION,
                abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_RETENTION,
            )
        ],
    )


def encrypted_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    log_bucket: s3.IBucket,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
) -> s3.Bucket:
    """A KMS-encrypted, versioned bucket kept when its stack is deleted (it holds data and results)."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        removal_policy=RemovalPolicy.RETAIN,
        server_access_logs_bucket=log_bucket,
        server_access_logs_prefix=f"{construct_id}/",
        lifecycle_rules=[
            *lifecycle_rules,
            s3.LifecycleRule(
                id="expire-old-versions",
                noncurrent_version_expiration=NONCURRENT_VERSION_RETENTION,
                abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_RETENTION,
            ),
        ],
    )
