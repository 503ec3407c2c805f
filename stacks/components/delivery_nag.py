"""cdk-nag AwsSolutions findings of the delivery pipeline that are acknowledged, each with its reason.

Almost all of them are grants CDK Pipelines writes itself; those broader than the pipeline uses are first
narrowed (`delivery_grants.py`). Each suppression names the exact findings it covers, so a new wildcard
still fails the check.
"""

from __future__ import annotations

from aws_cdk import pipelines
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"

ARTIFACT_GRANTS = NagPackSuppression(
    id=IAM5,
    reason="CDK's grants on the pipeline's own artifact buckets and keys (one per region), and on the configured "
    "prompt catalog object and its bucket, use action wildcards (s3:GetObject*, kms:GenerateDataKey*) and the "
    "artifact buckets' object wildcard, and reach no other bucket or key.",
    applies_to=[
        "Action::s3:GetObject*",
        "Action::s3:GetBucket*",
        "Action::s3:List*",
        "Action::s3:DeleteObject*",
        "Action::s3:Abort*",
        "Action::kms:ReEncrypt*",
        "Action::kms:GenerateDataKey*",
        RegexAppliesTo(regex=r"/^Resource::<PipelineArtifactsBucket[A-Za-z0-9]+\.Arn>\/\*$/"),
        RegexAppliesTo(regex=r"/^Resource::arn:(<AWS::Partition>|aws[a-z-]*):s3:::[a-z0-9-]*-support-[a-z0-9-]+\/\*$/"),
    ],
)
CODEBUILD_GRANTS = NagPackSuppression(
    id=IAM5,
    reason="CodeBuild's standard grants let a project write its own log streams and test reports, whose names "
    "CodeBuild generates per build under the project's log group and report-group prefix (the asset roles' grants "
    "are narrowed to their projects in delivery_grants.py).",
    applies_to=[
        RegexAppliesTo(
            regex=r"/^Resource::arn:(<AWS::Partition>|aws[a-z-]*):logs:[a-z0-9-]+:\d{12}:log-group:\/aws\/codebuild\/<[A-Za-z0-9]+>:\*$/"
        ),
        RegexAppliesTo(
            regex=r"/^Resource::arn:(<AWS::Partition>|aws[a-z-]*):codebuild:[a-z0-9-]+:\d{12}:report-group\/<[A-Za-z0-9]+>-\*$/"
        ),
    ],
)
PIPELINE_ROLE_KMS = NagPackSuppression(
    id=IAM5,
    reason="The artifact key of each cross-region support stack is matched by its alias (kms:ResourceAliases) "
    "within that region and account, because its key id lives in a stack this one cannot reference.",
    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:(<AWS::Partition>|aws[a-z-]*):kms:[a-z0-9-]+:\d{12}:key\/\*$/")],
)
SELF_MUTATION = NagPackSuppression(
    id=IAM5,
    reason="Self-mutation runs `cdk deploy` of this stack: it may assume only the tooling account's roles tagged "
    "as CDK bootstrap roles, and CDK grants its read-only cloudformation:DescribeStacks and s3:ListBucket on all "
    "resources.",
    applies_to=["Resource::*", RegexAppliesTo(regex=r"/^Resource::arn:\*:iam::\d{12}:role\/\*$/")],
)
ARTIFACT_BUCKET_LOGS = NagPackSuppression(
    id="AwsSolutions-S1",
    reason="Pipeline artifact buckets hold only KMS-encrypted build intermediates that the pipeline's own roles "
    "write and read, so access logs would record nothing but the pipeline's own runs.",
)


def acknowledge_delivery_findings(pipeline: pipelines.CodePipeline, extra_roles: list[IConstruct]) -> None:
    """Suppress the acknowledged findings of a built `pipeline` and the roles its steps run with."""
    built = pipeline.pipeline
    NagSuppressions.add_resource_suppressions(
        [pipeline, *extra_roles], [ARTIFACT_GRANTS, CODEBUILD_GRANTS], apply_to_children=True
    )
    NagSuppressions.add_resource_suppressions(built.role, [PIPELINE_ROLE_KMS], apply_to_children=True)
    NagSuppressions.add_resource_suppressions(pipeline.self_mutation_project, [SELF_MUTATION], apply_to_children=True)
    buckets: list[IConstruct] = [built.artifact_bucket]
    buckets.extend(support.replication_bucket for support in built.cross_region_support.values())
    NagSuppressions.add_resource_suppressions(buckets, [ARTIFACT_BUCKET_LOGS], apply_to_children=True)
