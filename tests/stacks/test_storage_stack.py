"""The storage stack: a rotating KMS key and three locked-down, versioned, retained buckets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk.assertions import Template

from tests.stacks.conftest import SynthesizedApp


def buckets(template: Template) -> Mapping[str, Mapping[str, Any]]:
    found: Mapping[str, Mapping[str, Any]] = template.find_resources("AWS::S3::Bucket")
    return found


def bucket_id(template: Template, name_part: str) -> str:
    (logical_id,) = [key for key in buckets(template) if key.startswith(name_part)]
    return logical_id


def test_the_key_rotates_and_is_kept(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)
    template.has_resource(
        "AWS::KMS::Key",
        {"Properties": {"EnableKeyRotation": True}, "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"},
    )
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/evalops-dev-data"})


def test_every_bucket_is_versioned_private_and_retained(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)
    assert len(buckets(template)) == 3
    for logical_id, bucket in buckets(template).items():
        properties = bucket["Properties"]
        assert bucket["DeletionPolicy"] == "Retain", logical_id
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        rules = properties["LifecycleConfiguration"]["Rules"]
        assert any("NoncurrentVersionExpiration" in rule for rule in rules), logical_id


def test_data_and_artifacts_use_the_key_and_log_to_the_log_bucket(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)
    log_bucket = bucket_id(template, "AccessLogs")
    (key_id,) = template.find_resources("AWS::KMS::Key")
    for name in ("Data", "Artifacts"):
        properties = buckets(template)[bucket_id(template, name)]["Properties"]
        (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }
        assert encryption["BucketKeyEnabled"] is True
        assert properties["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": log_bucket},
            "LogFilePrefix": f"{name}/",
        }


def test_the_log_bucket_is_s3_encrypted_as_access_logging_requires(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)
    properties = buckets(template)[bucket_id(template, "AccessLogs")]["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert "LoggingConfiguration" not in properties


def test_every_bucket_denies_requests_without_tls(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)
    policies = template.find_resources("AWS::S3::BucketPolicy")
    covered = set()
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        denies_insecure = [
            s
            for s in statements
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        if denies_insecure:
            covered.add(policy["Properties"]["Bucket"]["Ref"])
    assert covered == set(buckets(template))


def test_run_outputs_expire_under_the_pipeline_prefix(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.storage)

    def rules(name: str) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = buckets(template)[bucket_id(template, name)]["Properties"][
            "LifecycleConfiguration"
        ]["Rules"]
        return rules

    assert {
        "Id": "expire-run-outputs",
        "Prefix": "evalops-dev-llm-evaluation-multi-models-hybrid/runs/",
        "ExpirationInDays": 90,
        "Status": "Enabled",
    } in rules("Artifacts")
    assert all(rule.get("Id") != "expire-run-outputs" for rule in rules("Data"))


def test_the_key_serves_only_the_environments_log_groups_and_rules(reference_app: SynthesizedApp) -> None:
    """CloudWatch Logs and EventBridge may use the key for names with the environment's prefix, nothing else."""
    template = reference_app.template(reference_app.stage.storage)
    ((_, key),) = template.find_resources("AWS::KMS::Key").items()
    statements = {s.get("Sid"): s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    logs = statements["EncryptEnvironmentLogGroups"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    (pattern,) = logs["Condition"]["ArnLike"].values()
    assert pattern["Fn::Join"][1][-1] == ":log-group:/evalops/evalops-dev-*"
    events = statements["SendEnvironmentRuleFailuresToDeadLetters"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert events["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1][-1] == ":rule/evalops-dev-*"
    assert events["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
